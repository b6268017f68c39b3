package harness

import (
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

// TestChartsFromExampleResults renders the committed example's charts (what -render does)
// and checks each is a 1100×620 PNG with more than a blank canvas in it.
func TestChartsFromExampleResults(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "results", "example", "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := rep.charts(dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ping-latency-c1.png", "ping-latency-c16.png", "ping-latency-c64.png", "ping-qps.png", "login-latency.png"} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Error(err)
			continue
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := img.Bounds().Size(); got.X != 1100 || got.Y != 620 {
			t.Errorf("%s: %v pixels, want 1100×620", name, got)
		}
		colours := map[uint32]bool{}
		for y := 0; y < 620; y += 5 {
			for x := 0; x < 1100; x += 5 {
				r, g, b, _ := img.At(x, y).RGBA()
				colours[r>>8<<16|g>>8<<8|b>>8] = true
			}
		}
		if len(colours) < 5 {
			t.Errorf("%s: %d colours, looks empty", name, len(colours))
		}
	}
}
