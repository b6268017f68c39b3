package abi

/*
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "abi/abi.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/tdspool/tdspool/envoy/host"
)

// conn implements host.Conn for one downstream connection. Every method except Post must run
// on the connection's worker thread inside a hook (Envoy's objects are not thread-safe).
type conn struct {
	envoyPtr  C.envoy_dynamic_module_type_network_filter_envoy_ptr
	config    *filterConfig
	filter    host.Filter
	scheduler C.envoy_dynamic_module_type_network_filter_scheduler_module_ptr
	posted    postQueue

	// broken is set after a panic: the connection is closing and the filter gets no more calls.
	broken    bool
	destroyed bool
	// writingToClient marks our own WriteToClient re-entering on_write.
	writingToClient bool

	// Chunk descriptors live in C memory (malloc'd, grown on demand, freed on destroy): Envoy
	// fills them, and as C memory they cost no cgo pointer check and no Go allocation.
	chunks    *C.envoy_dynamic_module_type_envoy_buffer
	chunksCap int
	views     [][]byte
}

var _ host.Conn = (*conn)(nil)

func (c *conn) ID() uint64 {
	return uint64(C.envoy_dynamic_module_callback_network_filter_get_connection_id(c.envoyPtr))
}

// bufferViews turns Envoy's chunk list into byte slices that alias Envoy memory. They are
// valid only until the current hook returns.
func (c *conn) bufferViews(n C.size_t, fill func(*C.envoy_dynamic_module_type_envoy_buffer) C.bool) [][]byte {
	if n == 0 {
		return nil
	}
	if c.chunksCap < int(n) {
		c.freeChunks()
		c.chunksCap = max(int(n), 8)
		c.chunks = (*C.envoy_dynamic_module_type_envoy_buffer)(C.calloc(C.size_t(c.chunksCap), C.size_t(unsafe.Sizeof(C.envoy_dynamic_module_type_envoy_buffer{}))))
	}
	if !fill(c.chunks) {
		return nil
	}
	chunks := unsafe.Slice(c.chunks, int(n))
	views := c.views[:0]
	for _, ch := range chunks {
		if ch.length == 0 || ch.ptr == nil {
			continue
		}
		views = append(views, unsafe.Slice((*byte)(unsafe.Pointer(ch.ptr)), int(ch.length)))
	}
	c.views = views
	return views
}

func (c *conn) freeChunks() {
	if c.chunks != nil {
		C.free(unsafe.Pointer(c.chunks))
		c.chunks, c.chunksCap = nil, 0
	}
}

func (c *conn) ReadBuffer() [][]byte {
	n := C.envoy_dynamic_module_callback_network_filter_get_read_buffer_chunks_size(c.envoyPtr)
	return c.bufferViews(n, func(out *C.envoy_dynamic_module_type_envoy_buffer) C.bool {
		return C.envoy_dynamic_module_callback_network_filter_get_read_buffer_chunks(c.envoyPtr, out)
	})
}

func (c *conn) ReadBufferLen() int {
	return int(C.envoy_dynamic_module_callback_network_filter_get_read_buffer_size(c.envoyPtr))
}

func (c *conn) DrainRead(n int) bool {
	return bool(C.envoy_dynamic_module_callback_network_filter_drain_read_buffer(c.envoyPtr, C.size_t(n)))
}

func (c *conn) AppendRead(data []byte) bool {
	ok := C.envoy_dynamic_module_callback_network_filter_append_read_buffer(c.envoyPtr, moduleBuffer(data))
	runtime.KeepAlive(data)
	return bool(ok)
}

func (c *conn) WriteBuffer() [][]byte {
	n := C.envoy_dynamic_module_callback_network_filter_get_write_buffer_chunks_size(c.envoyPtr)
	return c.bufferViews(n, func(out *C.envoy_dynamic_module_type_envoy_buffer) C.bool {
		return C.envoy_dynamic_module_callback_network_filter_get_write_buffer_chunks(c.envoyPtr, out)
	})
}

func (c *conn) DrainWrite(n int) bool {
	return bool(C.envoy_dynamic_module_callback_network_filter_drain_write_buffer(c.envoyPtr, C.size_t(n)))
}

func (c *conn) AppendWrite(data []byte) bool {
	ok := C.envoy_dynamic_module_callback_network_filter_append_write_buffer(c.envoyPtr, moduleBuffer(data))
	runtime.KeepAlive(data)
	return bool(ok)
}

func (c *conn) WriteToClient(data []byte, endStream bool) {
	c.writingToClient = true
	C.envoy_dynamic_module_callback_network_filter_write(c.envoyPtr, moduleBuffer(data), C.bool(endStream))
	c.writingToClient = false
	runtime.KeepAlive(data)
}

func (c *conn) InjectToUpstream(data []byte, endStream bool) {
	C.envoy_dynamic_module_callback_network_filter_inject_read_data(c.envoyPtr, moduleBuffer(data), C.bool(endStream))
	runtime.KeepAlive(data)
}

func (c *conn) ContinueReading() {
	C.envoy_dynamic_module_callback_network_filter_continue_reading(c.envoyPtr)
}

func (c *conn) Close(how host.CloseType, details string) {
	C.envoy_dynamic_module_callback_network_filter_close_with_details(c.envoyPtr,
		C.envoy_dynamic_module_type_network_connection_close_type(how), moduleString(details))
	runtime.KeepAlive(details)
}

func (c *conn) ReadDisable(disable bool) {
	C.envoy_dynamic_module_callback_network_filter_read_disable(c.envoyPtr, C.bool(disable))
}

func (c *conn) SetFilterStateTyped(key, value string) bool {
	ok := C.envoy_dynamic_module_callback_network_set_filter_state_typed(c.envoyPtr, moduleString(key), moduleString(value))
	runtime.KeepAlive(key)
	runtime.KeepAlive(value)
	return bool(ok)
}

func (c *conn) FilterStateTyped(key string) (string, bool) {
	var out C.envoy_dynamic_module_type_envoy_buffer
	ok := C.envoy_dynamic_module_callback_network_get_filter_state_typed(c.envoyPtr, moduleString(key), &out)
	runtime.KeepAlive(key)
	if !ok {
		return "", false
	}
	return envoyString(out), true
}

func (c *conn) IncCounter(id host.MetricID, delta uint64) {
	C.envoy_dynamic_module_callback_network_filter_increment_counter(c.envoyPtr, C.size_t(id), C.uint64_t(delta))
}

func (c *conn) SetGauge(id host.MetricID, value uint64) {
	C.envoy_dynamic_module_callback_network_filter_set_gauge(c.envoyPtr, C.size_t(id), C.uint64_t(value))
}

func (c *conn) IncGauge(id host.MetricID, delta uint64) {
	C.envoy_dynamic_module_callback_network_filter_increment_gauge(c.envoyPtr, C.size_t(id), C.uint64_t(delta))
}

func (c *conn) DecGauge(id host.MetricID, delta uint64) {
	C.envoy_dynamic_module_callback_network_filter_decrement_gauge(c.envoyPtr, C.size_t(id), C.uint64_t(delta))
}

func (c *conn) RecordHistogram(id host.MetricID, value uint64) {
	C.envoy_dynamic_module_callback_network_filter_record_histogram_value(c.envoyPtr, C.size_t(id), C.uint64_t(value))
}

func (c *conn) RemoteAddress() (string, uint32, bool) {
	var addr C.envoy_dynamic_module_type_envoy_buffer
	var port C.uint32_t
	if !C.envoy_dynamic_module_callback_network_filter_get_remote_address(c.envoyPtr, &addr, &port) {
		return "", 0, false
	}
	return envoyString(addr), uint32(port), true
}

func (c *conn) ClusterHosts(cluster string) (total, healthy int, ok bool) {
	var t, h, d C.size_t
	res := C.envoy_dynamic_module_callback_network_filter_get_cluster_host_count(c.envoyPtr, moduleString(cluster), 0, &t, &h, &d)
	runtime.KeepAlive(cluster)
	return int(t), int(h), bool(res)
}

func (c *conn) RequestedServerName() string {
	var out C.envoy_dynamic_module_type_envoy_buffer
	if !C.envoy_dynamic_module_callback_network_filter_get_requested_server_name(c.envoyPtr, &out) {
		return ""
	}
	return envoyString(out)
}

func (c *conn) IsTLS() bool {
	return bool(C.envoy_dynamic_module_callback_network_filter_is_ssl(c.envoyPtr))
}

func (c *conn) Post(fn func()) bool {
	return c.posted.post(fn, func() {
		if c.scheduler != nil {
			C.envoy_dynamic_module_callback_network_filter_scheduler_commit(c.scheduler, 0)
		}
	})
}

func (c *conn) Log(level host.LogLevel, msg string) {
	logf(level, "[C%d] %s", c.ID(), msg)
}

// configHost implements host.ConfigHost during on_network_filter_config_new (main thread).
type configHost struct {
	envoyPtr C.envoy_dynamic_module_type_network_filter_config_envoy_ptr
}

func (h *configHost) define(kind string, name string, call func(C.envoy_dynamic_module_type_module_buffer, *C.size_t) C.envoy_dynamic_module_type_metrics_result) (host.MetricID, error) {
	var id C.size_t
	res := call(moduleString(name), &id)
	runtime.KeepAlive(name)
	if res != C.envoy_dynamic_module_type_metrics_result_Success {
		return 0, fmt.Errorf("define %s %q: metrics result %d", kind, name, int(res))
	}
	return host.MetricID(id), nil
}

func (h *configHost) DefineCounter(name string) (host.MetricID, error) {
	return h.define("counter", name, func(b C.envoy_dynamic_module_type_module_buffer, id *C.size_t) C.envoy_dynamic_module_type_metrics_result {
		return C.envoy_dynamic_module_callback_network_filter_config_define_counter(h.envoyPtr, b, id)
	})
}

func (h *configHost) DefineGauge(name string) (host.MetricID, error) {
	return h.define("gauge", name, func(b C.envoy_dynamic_module_type_module_buffer, id *C.size_t) C.envoy_dynamic_module_type_metrics_result {
		return C.envoy_dynamic_module_callback_network_filter_config_define_gauge(h.envoyPtr, b, id)
	})
}

func (h *configHost) DefineHistogram(name string) (host.MetricID, error) {
	return h.define("histogram", name, func(b C.envoy_dynamic_module_type_module_buffer, id *C.size_t) C.envoy_dynamic_module_type_metrics_result {
		return C.envoy_dynamic_module_callback_network_filter_config_define_histogram(h.envoyPtr, b, id)
	})
}

func (h *configHost) ValidationOnly() bool {
	return bool(C.envoy_dynamic_module_callback_is_validation_mode())
}

// Log writes to Envoy's log under the dynamic_modules logger. Safe from any thread.
func Log(level host.LogLevel, msg string) { logf(level, "%s", msg) }

func logf(level host.LogLevel, format string, args ...any) {
	lvl := C.envoy_dynamic_module_type_log_level(level)
	if !C.envoy_dynamic_module_callback_log_enabled(lvl) {
		return
	}
	msg := fmt.Sprintf(format, args...)
	C.envoy_dynamic_module_callback_log(lvl, moduleString(msg))
	runtime.KeepAlive(msg)
}

// moduleBuffer lends Go memory to Envoy for the duration of one call; callers keep data alive
// with runtime.KeepAlive until the call returns. The memory holds no Go pointers.
func moduleBuffer(data []byte) C.envoy_dynamic_module_type_module_buffer {
	if len(data) == 0 {
		return C.envoy_dynamic_module_type_module_buffer{}
	}
	return C.envoy_dynamic_module_type_module_buffer{ptr: (*C.char)(unsafe.Pointer(unsafe.SliceData(data))), length: C.size_t(len(data))}
}

func moduleString(s string) C.envoy_dynamic_module_type_module_buffer {
	if len(s) == 0 {
		return C.envoy_dynamic_module_type_module_buffer{}
	}
	return C.envoy_dynamic_module_type_module_buffer{ptr: (*C.char)(unsafe.Pointer(unsafe.StringData(s))), length: C.size_t(len(s))}
}

// envoyString copies an Envoy-owned buffer into Go memory.
func envoyString(b C.envoy_dynamic_module_type_envoy_buffer) string {
	if b.ptr == nil || b.length == 0 {
		return ""
	}
	return C.GoStringN(b.ptr, C.int(b.length))
}
