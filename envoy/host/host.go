// Package host is the Go face of Envoy's dynamic-module network-filter ABI, with no cgo.
//
// The session logic (package filter) is written against these interfaces so that it can be
// driven by unit tests without Envoy; package envoy/abi implements them on top of the C ABI.
//
// Threading contract: Envoy calls every Filter method on the worker thread that owns the
// connection, one at a time. Conn methods may only be called from inside those calls, except
// Conn.Post, which any goroutine may call to get a function run on that worker later.
package host

import "fmt"

// Status tells Envoy whether the filters after this one may run now.
type Status int

const (
	Continue      Status = 0 // same values as the ABI's on_network_filter_data_status
	StopIteration Status = 1
)

func (s Status) String() string {
	if s == Continue {
		return "Continue"
	}
	return "StopIteration"
}

// ConnectionEvent is a downstream connection event (ABI network_connection_event).
type ConnectionEvent int

const (
	RemoteClose ConnectionEvent = iota
	LocalClose
	Connected
	ConnectedZeroRTT
)

func (e ConnectionEvent) String() string {
	switch e {
	case RemoteClose:
		return "RemoteClose"
	case LocalClose:
		return "LocalClose"
	case Connected:
		return "Connected"
	case ConnectedZeroRTT:
		return "ConnectedZeroRtt"
	}
	return fmt.Sprintf("ConnectionEvent(%d)", int(e))
}

// CloseType says what happens to pending writes when the filter closes the connection.
type CloseType int

const (
	FlushWrite CloseType = iota // write what is pending, then close
	NoFlush
	FlushWriteAndDelay
	Abort
	AbortReset
)

// LogLevel mirrors the ABI log levels.
type LogLevel int

const (
	LogTrace LogLevel = iota
	LogDebug
	LogInfo
	LogWarn
	LogError
	LogCritical
)

// MetricID is an Envoy metric defined by a filter config.
type MetricID uint64

// Metrics are defined on the main thread when a config loads.
type Metrics interface {
	DefineCounter(name string) (MetricID, error)
	DefineGauge(name string) (MetricID, error)
	DefineHistogram(name string) (MetricID, error)
}

// ConfigHost is what a filter config sees while it loads (main thread).
type ConfigHost interface {
	Metrics
	// ValidationOnly is true under `envoy --mode validate`: check the config, start nothing.
	ValidationOnly() bool
}

// Conn is one downstream connection as the filter sees it.
//
// Buffers returned by ReadBuffer and WriteBuffer are views into Envoy-owned memory, valid only
// until the current Filter method returns; copy what you keep.
type Conn interface {
	ID() uint64

	ReadBuffer() [][]byte
	ReadBufferLen() int
	DrainRead(n int) bool
	AppendRead(data []byte) bool

	WriteBuffer() [][]byte
	DrainWrite(n int) bool
	AppendWrite(data []byte) bool

	// WriteToClient writes through the whole write filter chain. The binding does not call
	// this filter's OnWrite for these bytes.
	WriteToClient(data []byte, endStream bool)
	// InjectToUpstream hands bytes to the read filters after this one (tcp_proxy), bypassing
	// OnRead. Only valid once the upstream is connected.
	InjectToUpstream(data []byte, endStream bool)
	// ContinueReading resumes the filter chain after StopIteration.
	ContinueReading()
	// Close closes the downstream connection; details appear in Envoy's access logs.
	Close(how CloseType, details string)
	ReadDisable(disable bool)

	// SetFilterStateTyped stores value through Envoy's registered object factory for key
	// (for example envoy.tcp_proxy.cluster). False when Envoy refused it.
	SetFilterStateTyped(key, value string) bool
	FilterStateTyped(key string) (string, bool)

	IncCounter(id MetricID, delta uint64)
	SetGauge(id MetricID, value uint64)
	IncGauge(id MetricID, delta uint64)
	DecGauge(id MetricID, delta uint64)
	RecordHistogram(id MetricID, value uint64)

	RemoteAddress() (addr string, port uint32, ok bool)
	// ClusterHosts counts a cluster's hosts at priority 0: all of them and the healthy ones
	// (active health checks and outlier ejection both count as unhealthy).
	ClusterHosts(cluster string) (total, healthy int, ok bool)
	// RequestedServerName is the TLS SNI when Envoy terminated TLS (TDS 8), else "".
	RequestedServerName() string
	IsTLS() bool

	// Post runs fn on this connection's worker thread, inside a later Envoy callback. Safe from
	// any goroutine. Returns false (and drops fn) once the connection is gone; fn queued and
	// not run yet when the connection is destroyed is dropped too.
	Post(fn func()) bool

	Log(level LogLevel, msg string)
}

// Filter is one connection's filter instance. Methods run on the worker thread.
type Filter interface {
	OnNewConnection() Status
	// OnRead sees the whole accumulated read buffer (size bytes) from the client.
	OnRead(size int, endStream bool) Status
	// OnWrite sees bytes about to be written to the client.
	OnWrite(size int, endStream bool) Status
	OnEvent(event ConnectionEvent)
	// OnWatermark reports the client write buffer crossing its high (true) or low watermark.
	OnWatermark(above bool)
	// OnDestroy is the last call; the connection and its buffers are gone afterwards.
	OnDestroy()
}

// FilterFactory is one loaded filter config; it makes a Filter per connection.
type FilterFactory interface {
	NewFilter(conn Conn) Filter
	// Destroy runs on the main thread when Envoy drops the config.
	Destroy()
}

// ConfigFactory builds a FilterFactory from the config bytes Envoy passes (JSON for us).
// A non-nil error refuses the config; its text is logged by the binding.
type ConfigFactory func(name string, config []byte, h ConfigHost) (FilterFactory, error)

// Lifecycle receives what Envoy tells a bootstrap extension about the whole process. Every
// method runs on Envoy's main thread, one at a time.
type Lifecycle interface {
	// OnServerInitialized: Envoy has started (its static listeners exist).
	OnServerInitialized()
	// OnDrainStarted: the server-wide drain began (the parent of a hot restart, or the admin
	// endpoint /drain_listeners?graceful). Envoy closes what is left when the drain ends.
	OnDrainStarted()
	// OnListenerUpdated: a listener was added or replaced (LDS). Connections of a replaced
	// listener keep its old filter configs until Envoy's drain time has passed.
	OnListenerUpdated(name string)
	// OnListenerRemoved: a listener was removed (LDS); its connections drain the same way.
	OnListenerRemoved(name string)
	// OnShutdown: Envoy is about to exit.
	OnShutdown()
}

// LifecycleFactory builds a Lifecycle from the bootstrap extension's config bytes (main thread).
// log writes to Envoy's log and is safe from any goroutine.
type LifecycleFactory func(name string, config []byte, log func(LogLevel, string)) (Lifecycle, error)
