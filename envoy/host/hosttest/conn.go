// Package hosttest is a fake Envoy connection for unit tests of filters: it keeps read and
// write buffers, records what the filter asked Envoy to do, and runs posted functions when
// the test says so. Not safe for concurrent use except Post.
package hosttest

import (
	"sync"

	"github.com/tdspool/tdspool/envoy/host"
)

// Metrics is a fake metric registry shared by a config and its connections.
type Metrics struct {
	mu     sync.Mutex
	names  []string
	values []uint64
	hist   map[string][]uint64
	ids    map[string]host.MetricID
}

func NewMetrics() *Metrics {
	return &Metrics{hist: map[string][]uint64{}, ids: map[string]host.MetricID{}}
}

func (m *Metrics) define(name string) (host.MetricID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, ok := m.ids[name]; ok {
		return id, nil
	}
	id := host.MetricID(len(m.names))
	m.names = append(m.names, name)
	m.values = append(m.values, 0)
	m.ids[name] = id
	return id, nil
}

func (m *Metrics) DefineCounter(name string) (host.MetricID, error)   { return m.define(name) }
func (m *Metrics) DefineGauge(name string) (host.MetricID, error)     { return m.define(name) }
func (m *Metrics) DefineHistogram(name string) (host.MetricID, error) { return m.define(name) }
func (m *Metrics) ValidationOnly() bool                               { return false }

// Value is a counter or gauge by name (0 when undefined).
func (m *Metrics) Value(name string) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, ok := m.ids[name]; ok {
		return m.values[id]
	}
	return 0
}

// Samples are the values recorded into a histogram.
func (m *Metrics) Samples(name string) []uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]uint64(nil), m.hist[name]...)
}

func (m *Metrics) add(id host.MetricID, delta int64, set bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if set {
		m.values[id] = uint64(delta)
		return
	}
	m.values[id] = uint64(int64(m.values[id]) + delta)
}

// Conn is a fake host.Conn.
type Conn struct {
	Metrics *Metrics
	ConnID  uint64
	SNI     string
	TLS     bool

	Read  []byte // bytes from the client not yet drained
	Write []byte // bytes Envoy is about to write to the client (OnWrite's buffer)

	ToClient        []byte // WriteToClient output
	ClientEndStream bool
	ToUpstream      []byte // InjectToUpstream output
	FilterState     map[string]string
	Continued       int // ContinueReading calls
	Closed          bool
	CloseDetails    string
	CloseType       host.CloseType
	ReadDisabled    int
	// UnhealthyClusters makes ClusterHosts report no healthy host.
	UnhealthyClusters map[string]bool
	RefuseCluster     bool // SetFilterStateTyped returns false
	Logs              []string

	mu        sync.Mutex
	posted    []func()
	destroyed bool
}

func NewConn(m *Metrics) *Conn {
	return &Conn{Metrics: m, ConnID: 1, FilterState: map[string]string{}}
}

func (c *Conn) ID() uint64 { return c.ConnID }

func (c *Conn) ReadBuffer() [][]byte {
	if len(c.Read) == 0 {
		return nil
	}
	return [][]byte{c.Read}
}
func (c *Conn) ReadBufferLen() int { return len(c.Read) }
func (c *Conn) DrainRead(n int) bool {
	if n > len(c.Read) {
		return false
	}
	c.Read = c.Read[n:]
	return true
}
func (c *Conn) AppendRead(d []byte) bool { c.Read = append(c.Read, d...); return true }

func (c *Conn) WriteBuffer() [][]byte {
	if len(c.Write) == 0 {
		return nil
	}
	return [][]byte{c.Write}
}
func (c *Conn) DrainWrite(n int) bool {
	if n > len(c.Write) {
		return false
	}
	c.Write = c.Write[n:]
	return true
}
func (c *Conn) AppendWrite(d []byte) bool { c.Write = append(c.Write, d...); return true }

func (c *Conn) WriteToClient(d []byte, end bool) {
	c.ToClient = append(c.ToClient, d...)
	c.ClientEndStream = c.ClientEndStream || end
}
func (c *Conn) InjectToUpstream(d []byte, end bool) { c.ToUpstream = append(c.ToUpstream, d...) }
func (c *Conn) ContinueReading()                    { c.Continued++ }
func (c *Conn) Close(how host.CloseType, details string) {
	c.Closed = true
	c.CloseDetails = details
	c.CloseType = how
}
func (c *Conn) ReadDisable(disable bool) {
	if disable {
		c.ReadDisabled++
	} else {
		c.ReadDisabled--
	}
}

func (c *Conn) SetFilterStateTyped(key, value string) bool {
	if c.RefuseCluster {
		return false
	}
	c.FilterState[key] = value
	return true
}
func (c *Conn) FilterStateTyped(key string) (string, bool) { v, ok := c.FilterState[key]; return v, ok }

func (c *Conn) IncCounter(id host.MetricID, d uint64) { c.Metrics.add(id, int64(d), false) }
func (c *Conn) SetGauge(id host.MetricID, v uint64)   { c.Metrics.add(id, int64(v), true) }
func (c *Conn) IncGauge(id host.MetricID, d uint64)   { c.Metrics.add(id, int64(d), false) }
func (c *Conn) DecGauge(id host.MetricID, d uint64)   { c.Metrics.add(id, -int64(d), false) }
func (c *Conn) RecordHistogram(id host.MetricID, v uint64) {
	c.Metrics.mu.Lock()
	defer c.Metrics.mu.Unlock()
	name := c.Metrics.names[id]
	c.Metrics.hist[name] = append(c.Metrics.hist[name], v)
}

func (c *Conn) RemoteAddress() (string, uint32, bool) { return "127.0.0.1", 50000, true }
func (c *Conn) RequestedServerName() string           { return c.SNI }
func (c *Conn) ClusterHosts(cluster string) (int, int, bool) {
	if c.UnhealthyClusters[cluster] {
		return 1, 0, true
	}
	return 1, 1, true
}
func (c *Conn) IsTLS() bool                         { return c.TLS }
func (c *Conn) Log(level host.LogLevel, msg string) { c.Logs = append(c.Logs, msg) }

// Post queues fn; RunPosted runs the queue on the test's goroutine (the "worker"). After
// Destroy it refuses fn (false), as Envoy's binding does once the connection is gone.
func (c *Conn) Post(fn func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.destroyed {
		return false
	}
	c.posted = append(c.posted, fn)
	return true
}

// Destroy is what Envoy's destroy of the connection does to posted functions: those queued
// and not run yet are dropped without running, and later posts are refused.
func (c *Conn) Destroy() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.destroyed, c.posted = true, nil
}

// RunPosted runs everything posted so far and returns how many ran.
func (c *Conn) RunPosted() int {
	c.mu.Lock()
	fns := c.posted
	c.posted = nil
	c.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
	return len(fns)
}

// Pending is how many posted functions wait.
func (c *Conn) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.posted)
}
