package harness

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Charts are drawn with the standard library only (image, image/png) and a built-in 5×7
// bitmap font, so the benchmark adds no plotting dependency.

var font5x7 = map[rune][7]string{
	'A': {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"},
	'B': {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."},
	'C': {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."},
	'D': {"####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."},
	'E': {"#####", "#....", "#....", "####.", "#....", "#....", "#####"},
	'F': {"#####", "#....", "#....", "####.", "#....", "#....", "#...."},
	'G': {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"},
	'H': {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"},
	'I': {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."},
	'J': {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."},
	'K': {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"},
	'L': {"#....", "#....", "#....", "#....", "#....", "#....", "#####"},
	'M': {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"},
	'N': {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"},
	'O': {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."},
	'P': {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."},
	'Q': {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"},
	'R': {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"},
	'S': {".####", "#....", "#....", ".###.", "....#", "....#", "####."},
	'T': {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."},
	'U': {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."},
	'V': {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."},
	'W': {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."},
	'X': {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"},
	'Y': {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."},
	'Z': {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"},
	'0': {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."},
	'1': {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."},
	'2': {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"},
	'3': {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."},
	'4': {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."},
	'5': {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."},
	'6': {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."},
	'7': {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."},
	'8': {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."},
	'9': {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."},
	'.': {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."},
	',': {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."},
	'-': {".....", ".....", ".....", "#####", ".....", ".....", "....."},
	'+': {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."},
	'=': {".....", ".....", "#####", ".....", "#####", ".....", "....."},
	'(': {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."},
	')': {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."},
	'/': {".....", "....#", "...#.", "..#..", ".#...", "#....", "....."},
	':': {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."},
	'%': {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"},
	'_': {".....", ".....", ".....", ".....", ".....", ".....", "#####"},
	'µ': {".....", "#...#", "#...#", "#...#", "##.##", "#.#.#", "#...."},
	'×': {".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "....."},
	' ': {".....", ".....", ".....", ".....", ".....", ".....", "....."},
}

func init() { font5x7['Μ'] = font5x7['µ'] } // strings.ToUpper("µ") is Greek capital mu

type canvas struct {
	img *image.RGBA
}

func newCanvas(w, h int) *canvas {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	return &canvas{img}
}

func (c *canvas) rect(x0, y0, x1, y1 int, col color.RGBA) {
	if x0 > x1 {
		x0, x1 = x1, x0
	}
	if y0 > y1 {
		y0, y1 = y1, y0
	}
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			c.img.SetRGBA(x, y, col)
		}
	}
}

// line draws a thick line (Bresenham with a square pen).
func (c *canvas) line(x0, y0, x1, y1, width int, col color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	err := dx + dy
	for {
		c.rect(x0-width/2, y0-width/2, x0-width/2+width, y0-width/2+width, col)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * err
		if e2 >= dy {
			err += dy
			x0 += sx
		}
		if e2 <= dx {
			err += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// text draws s (upper-cased) at x, y (top-left) with pixel scale; returns its width.
func (c *canvas) text(x, y int, s string, scale int, col color.RGBA) int {
	start := x
	for _, r := range strings.ToUpper(s) {
		g, ok := font5x7[r]
		if !ok {
			g = font5x7[' ']
		}
		for gy, row := range g {
			for gx, px := range row {
				if px == '#' {
					c.rect(x+gx*scale, y+gy*scale, x+(gx+1)*scale, y+(gy+1)*scale, col)
				}
			}
		}
		x += 6 * scale
	}
	return x - start
}

func textWidth(s string, scale int) int { return len([]rune(s)) * 6 * scale }

var (
	black   = color.RGBA{30, 30, 30, 255}
	grey    = color.RGBA{215, 215, 215, 255}
	palette = []color.RGBA{
		{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255},
		{148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255},
	}
)

func (c *canvas) save(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, c.img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// barChart: groups along x (targets), one bar per series inside each group, log-scale y in
// durations.
func barChart(path, title string, groups, series []string, values [][]time.Duration) error {
	const W, H = 1100, 620
	const left, right, top, bottom = 110, 30, 70, 120
	c := newCanvas(W, H)
	c.text(left, 20, title, 2, black)
	minV, maxV := math.Inf(1), 0.0
	for _, row := range values {
		for _, v := range row {
			if v > 0 {
				minV = math.Min(minV, float64(v))
				maxV = math.Max(maxV, float64(v))
			}
		}
	}
	if maxV == 0 {
		return nil
	}
	lo := math.Floor(math.Log10(minV))
	hi := math.Ceil(math.Log10(maxV))
	if hi <= lo {
		hi = lo + 1
	}
	plotH := H - top - bottom
	y := func(v float64) int { return H - bottom - int((math.Log10(v)-lo)/(hi-lo)*float64(plotH)) }
	for e := lo; e <= hi; e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if math.Log10(v) > hi+1e-9 {
				continue
			}
			yy := y(v)
			c.rect(left, yy, W-right, yy+1, grey)
			lbl := d(time.Duration(v))
			c.text(left-10-textWidth(lbl, 2), yy-7, lbl, 2, black)
		}
	}
	c.rect(left, top, left+2, H-bottom, black)
	c.rect(left, H-bottom, W-right, H-bottom+2, black)
	gw := float64(W-left-right) / float64(len(groups))
	bw := int(gw * 0.8 / float64(len(series)))
	for gi, g := range groups {
		gx := left + int(gw*float64(gi)+gw*0.1)
		for si := range series {
			v := values[gi][si]
			if v <= 0 {
				continue
			}
			c.rect(gx+si*bw, y(float64(v)), gx+(si+1)*bw-2, H-bottom, palette[si%len(palette)])
		}
		lbl := g
		scale := 2
		if textWidth(lbl, 2) > int(gw) {
			scale = 1
		}
		c.text(left+int(gw*float64(gi)+gw/2)-textWidth(lbl, scale)/2, H-bottom+12, lbl, scale, black)
	}
	lx := left
	for si, s := range series {
		c.rect(lx, H-40, lx+20, H-26, palette[si%len(palette)])
		lx += 28
		lx += c.text(lx, H-40, s, 2, black) + 24
	}
	return c.save(path)
}

// lineChart: x categories (concurrency), a line per series (target), linear y.
func lineChart(path, title, ylabel string, xs []string, series []string, values [][]float64) error {
	const W, H = 1100, 620
	const left, right, top, bottom = 120, 230, 70, 80
	c := newCanvas(W, H)
	c.text(left, 20, title, 2, black)
	maxV := 0.0
	for _, row := range values {
		for _, v := range row {
			maxV = math.Max(maxV, v)
		}
	}
	if maxV == 0 {
		return nil
	}
	step := math.Pow(10, math.Floor(math.Log10(maxV)))
	for maxV/step < 4 {
		step /= 2
	}
	top2 := math.Ceil(maxV/step) * step
	plotH := H - top - bottom
	y := func(v float64) int { return H - bottom - int(v/top2*float64(plotH)) }
	for v := 0.0; v <= top2+1e-9; v += step {
		yy := y(v)
		c.rect(left, yy, W-right, yy+1, grey)
		lbl := fmt.Sprintf("%.0f", v)
		c.text(left-10-textWidth(lbl, 2), yy-7, lbl, 2, black)
	}
	c.text(10, top-30, ylabel, 2, black)
	c.rect(left, top, left+2, H-bottom, black)
	c.rect(left, H-bottom, W-right, H-bottom+2, black)
	dx := float64(W-left-right-40) / float64(max(1, len(xs)-1))
	x := func(i int) int { return left + 20 + int(dx*float64(i)) }
	for i, s := range xs {
		c.text(x(i)-textWidth(s, 2)/2, H-bottom+12, s, 2, black)
	}
	c.text(left+(W-left-right)/2-textWidth("sessions", 2)/2, H-bottom+40, "sessions", 2, black)
	for si, name := range series {
		col := palette[si%len(palette)]
		prev := -1
		for i, v := range values[si] {
			if v <= 0 {
				continue
			}
			if prev >= 0 {
				c.line(x(prev), y(values[si][prev]), x(i), y(v), 3, col)
			}
			c.rect(x(i)-4, y(v)-4, x(i)+5, y(v)+5, col)
			prev = i
		}
		c.rect(W-right+20, top+si*26, W-right+40, top+si*26+14, col)
		c.text(W-right+48, top+si*26, name, 2, black)
	}
	return c.save(path)
}

// charts writes the PNGs for the report.
func (r *Report) charts(dir string) error {
	t := r.table()
	pct := []string{"p50", "p90", "p99", "p99.9"}
	for _, p := range r.params("ping") {
		var groups []string
		var vals [][]time.Duration
		for _, name := range r.Targets {
			if c, ok := t[key{"ping", name, p}]; ok {
				groups = append(groups, name)
				vals = append(vals, []time.Duration{c.Res.Lat.P50, c.Res.Lat.P90, c.Res.Lat.P99, c.Res.Lat.P999})
			}
		}
		if err := barChart(filepath.Join(dir, fmt.Sprintf("ping-latency-c%d.png", p)),
			fmt.Sprintf("ping SELECT 1 latency, %d sessions (log scale)", p), groups, pct, vals); err != nil {
			return err
		}
	}
	if ps := r.params("ping"); len(ps) > 1 {
		var xs, series []string
		for _, p := range ps {
			xs = append(xs, fmt.Sprint(p))
		}
		var vals [][]float64
		for _, name := range r.Targets {
			row := make([]float64, len(ps))
			any := false
			for i, p := range ps {
				if c, ok := t[key{"ping", name, p}]; ok {
					row[i] = c.Res.QPS
					any = true
				}
			}
			if any {
				series = append(series, name)
				vals = append(vals, row)
			}
		}
		if err := lineChart(filepath.Join(dir, "ping-qps.png"), "ping queries per second vs concurrency", "qps", xs, series, vals); err != nil {
			return err
		}
	}
	for _, p := range r.params("login") {
		var groups []string
		var vals [][]time.Duration
		for _, name := range r.Targets {
			if c, ok := t[key{"login", name, p}]; ok {
				groups = append(groups, name)
				vals = append(vals, []time.Duration{c.Res.LoginLat.P50, c.Res.LoginLat.P90, c.Res.LoginLat.P99, c.Res.LoginLat.P999})
			}
		}
		if err := barChart(filepath.Join(dir, "login-latency.png"),
			fmt.Sprintf("login latency (connect to LOGINACK), %d workers (log scale)", p), groups, pct, vals); err != nil {
			return err
		}
	}
	return nil
}
