package harness

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Chart size: 1100 × 620 pixels at 96 dpi.
const chartW, chartH = 1100 * vg.Inch / 96, 620 * vg.Inch / 96

// newChart is a plot with the report's text sizes and its legend kept apart (see save).
func newChart(title string) (*plot.Plot, *plot.Legend) {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(14)
	p.Title.Padding = vg.Points(8)
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Tick.Label.Font.Size = vg.Points(11)
		a.Label.TextStyle.Font.Size = vg.Points(11)
	}
	leg := plot.NewLegend()
	leg.TextStyle.Font.Size = vg.Points(11)
	leg.Top, leg.Left = true, true
	return p, &leg
}

// save draws the plot with its legend in a column to the right, where it hides no data, and
// writes the PNG.
func save(p *plot.Plot, leg *plot.Legend, path string) error {
	img := vgimg.New(chartW, chartH)
	c := draw.New(img)
	const gap = 10
	legendW := leg.Rectangle(c).Size().X + 2*gap
	p.Draw(draw.Crop(c, 0, -legendW, 0, 0))
	leg.Draw(draw.Crop(c, chartW-legendW+gap, 0, 0, -3*gap))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// barChart: groups along x (targets), one bar per series inside each group, log-scale y in
// durations.
func barChart(path, title string, groups, series []string, values [][]time.Duration) error {
	lo, hi := math.Inf(1), 0.0
	for _, row := range values {
		for _, v := range row {
			if v > 0 {
				lo, hi = math.Min(lo, float64(v)), math.Max(hi, float64(v))
			}
		}
	}
	if hi == 0 {
		return nil
	}
	p, leg := newChart(title)
	groupW := (chartW - 2.5*vg.Inch) / vg.Length(len(groups))
	barW := groupW * 0.8 / vg.Length(len(series))
	for si, name := range series {
		col := make(plotter.Values, len(groups))
		for gi := range groups {
			col[gi] = float64(values[gi][si])
		}
		bars, err := plotter.NewBarChart(col, barW)
		if err != nil {
			return err
		}
		bars.LineStyle.Width = 0
		bars.Color = plotutil.Color(si)
		bars.Offset = barW * (vg.Length(si) - vg.Length(len(series)-1)/2)
		p.Add(bars)
		leg.Add(name, bars)
	}
	p.NominalX(groups...)
	p.Y.Scale = flooredLog{}
	p.Y.Tick.Marker = durationTicks{}
	p.Y.Min, p.Y.Max = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
	p.Add(plotter.NewGrid())
	return save(p, leg, path)
}

// flooredLog is a log scale on which values at or below the axis minimum sit on the axis,
// so bars, which start at zero, can stand on it.
type flooredLog struct{}

func (flooredLog) Normalize(min, max, x float64) float64 {
	return plot.LogScale{}.Normalize(min, max, math.Max(x, min))
}

// durationTicks labels a log axis of nanoseconds at 1, 2 and 5 × 10ⁿ.
type durationTicks struct{}

func (durationTicks) Ticks(min, max float64) []plot.Tick {
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(min)); e <= math.Ceil(math.Log10(max)); e++ {
		for _, m := range []float64{1, 2, 5} {
			if v := m * math.Pow(10, e); v >= min*(1-1e-9) && v <= max*(1+1e-9) {
				ticks = append(ticks, plot.Tick{Value: v, Label: d(time.Duration(v))})
			}
		}
	}
	return ticks
}

// lineChart: x categories (concurrency), a line per series (target), linear y from zero.
func lineChart(path, title, xlabel, ylabel string, xs []string, series []string, values [][]float64) error {
	p, leg := newChart(title)
	p.X.Label.Text, p.Y.Label.Text = xlabel, ylabel
	for si, name := range series {
		var pts plotter.XYs
		for i, v := range values[si] {
			if v > 0 {
				pts = append(pts, plotter.XY{X: float64(i), Y: v})
			}
		}
		if len(pts) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		line.Color, line.Width = plotutil.Color(si), vg.Points(2)
		line.Dashes = plotutil.Dashes(si / len(plotutil.DefaultColors)) // colours repeat after 7
		points.Color, points.Shape = plotutil.Color(si), plotutil.Shape(si)
		p.Add(line, points)
		leg.Add(name, line, points)
	}
	p.NominalX(xs...)
	p.Y.Min = 0
	p.Y.Tick.Marker = plot.TickerFunc(func(min, max float64) []plot.Tick {
		ticks := plot.DefaultTicks{}.Ticks(min, max)
		for i := range ticks {
			if ticks[i].Label != "" {
				ticks[i].Label = fmt.Sprintf("%.0f", ticks[i].Value)
			}
		}
		return ticks
	})
	p.Add(plotter.NewGrid())
	return save(p, leg, path)
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
		if err := lineChart(filepath.Join(dir, "ping-qps.png"), "ping queries per second vs concurrency", "sessions", "qps", xs, series, vals); err != nil {
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
