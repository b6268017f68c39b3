package abi

/*
#cgo linux LDFLAGS: -Wl,--unresolved-symbols=ignore-all
#cgo darwin LDFLAGS: -Wl,-undefined,dynamic_lookup
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "abi/abi.h"
*/
import "C"

import (
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/tdspool/tdspool/envoy/host"
)

// Every exported hook has the same shape: look the module pointer up (absent → safe default),
// then run the Go side under guard, which turns a panic into "close this one connection, count
// it, log once" so that nothing unwinds into Envoy.
//
// Every pointer-typed value crossing the boundary is a real address: Envoy's own objects, C
// strings, or the registry's C allocations. Nothing else (no integer handle) ever travels in
// a pointer type, because the Go runtime checks pointer slots whenever it moves a stack.

var (
	factoriesMu sync.Mutex
	factories   = map[string]host.ConfigFactory{}

	configs = newRegistry[*filterConfig]()
	conns   = newRegistry[*conn]()

	// panicsRecovered counts panics caught at the boundary, process-wide. Nothing reads it:
	// Envoy counts the connections a panic closed in panics_total, and a debugger or core dump
	// shows this total.
	panicsRecovered atomic.Uint64
	panicLogOnce    sync.Once
)

// RegisterNetworkFilter makes factory available under filter_name in the Envoy config. Call it
// from an init function of the module's main package.
func RegisterNetworkFilter(filterName string, factory host.ConfigFactory) {
	factoriesMu.Lock()
	defer factoriesMu.Unlock()
	factories[filterName] = factory
}

// filterConfig is one loaded filter config.
type filterConfig struct {
	envoyPtr C.envoy_dynamic_module_type_network_filter_config_envoy_ptr
	name     string
	factory  host.FilterFactory
	panics   host.MetricID
	panicsOK bool
}

//export envoy_dynamic_module_on_program_init
func envoy_dynamic_module_on_program_init() C.envoy_dynamic_module_type_abi_version_module_ptr {
	// The ABI version string we were compiled against; Envoy logs "matched" or "deprecated".
	return C.envoy_dynamic_module_type_abi_version_module_ptr(unsafe.Pointer(C.envoy_dynamic_modules_abi_version))
}

//export envoy_dynamic_module_on_network_filter_config_new
func envoy_dynamic_module_on_network_filter_config_new(
	envoyPtr C.envoy_dynamic_module_type_network_filter_config_envoy_ptr,
	name C.envoy_dynamic_module_type_envoy_buffer,
	config C.envoy_dynamic_module_type_envoy_buffer,
) (result C.envoy_dynamic_module_type_network_filter_config_module_ptr) {
	filterName := envoyString(name)
	defer func() {
		if r := recover(); r != nil {
			panicsRecovered.Add(1)
			logf(host.LogCritical, "tdspool: panic while loading filter config %q: %v\n%s", filterName, r, debug.Stack())
			result = nil
		}
	}()
	factoriesMu.Lock()
	factory := factories[filterName]
	factoriesMu.Unlock()
	if factory == nil {
		logf(host.LogError, "tdspool: unknown filter_name %q (this module provides: %s)", filterName, registeredNames())
		return nil
	}
	fc := &filterConfig{envoyPtr: envoyPtr, name: filterName}
	ch := &configHost{envoyPtr: envoyPtr}
	id, err := ch.DefineCounter("panics_total")
	fc.panics, fc.panicsOK = id, err == nil
	ff, err := factory(filterName, []byte(envoyString(config)), ch)
	if err != nil {
		// Envoy only says the config failed; this line is where the reason is.
		logf(host.LogError, "tdspool: filter config %q rejected: %v", filterName, err)
		return nil
	}
	fc.factory = ff
	return C.envoy_dynamic_module_type_network_filter_config_module_ptr(configs.add(fc))
}

//export envoy_dynamic_module_on_network_filter_config_destroy
func envoy_dynamic_module_on_network_filter_config_destroy(configPtr C.envoy_dynamic_module_type_network_filter_config_module_ptr) {
	fc, ok := configs.remove(unsafe.Pointer(configPtr))
	if !ok {
		return
	}
	defer recoverQuietly("config_destroy")
	fc.factory.Destroy()
}

//export envoy_dynamic_module_on_network_filter_new
func envoy_dynamic_module_on_network_filter_new(
	configPtr C.envoy_dynamic_module_type_network_filter_config_module_ptr,
	envoyPtr C.envoy_dynamic_module_type_network_filter_envoy_ptr,
) (result C.envoy_dynamic_module_type_network_filter_module_ptr) {
	fc, ok := configs.get(unsafe.Pointer(configPtr))
	if !ok {
		return nil // Envoy closes the connection
	}
	c := &conn{envoyPtr: envoyPtr, config: fc}
	defer func() {
		if r := recover(); r != nil {
			notePanic(fc, c, "filter_new", r)
			result = nil
		}
	}()
	c.filter = fc.factory.NewFilter(c)
	return C.envoy_dynamic_module_type_network_filter_module_ptr(conns.add(c))
}

//export envoy_dynamic_module_on_network_filter_new_connection
func envoy_dynamic_module_on_network_filter_new_connection(
	envoyPtr C.envoy_dynamic_module_type_network_filter_envoy_ptr,
	filterPtr C.envoy_dynamic_module_type_network_filter_module_ptr,
) (status C.envoy_dynamic_module_type_on_network_filter_data_status) {
	c, ok := lookup(envoyPtr, filterPtr)
	if !ok {
		return stopIteration
	}
	defer c.guard("on_new_connection", &status)
	c.scheduler = C.envoy_dynamic_module_callback_network_filter_scheduler_new(envoyPtr)
	return C.envoy_dynamic_module_type_on_network_filter_data_status(c.filter.OnNewConnection())
}

//export envoy_dynamic_module_on_network_filter_read
func envoy_dynamic_module_on_network_filter_read(
	envoyPtr C.envoy_dynamic_module_type_network_filter_envoy_ptr,
	filterPtr C.envoy_dynamic_module_type_network_filter_module_ptr,
	dataLength C.size_t, endStream C.bool,
) (status C.envoy_dynamic_module_type_on_network_filter_data_status) {
	c, ok := lookup(envoyPtr, filterPtr)
	if !ok {
		return stopIteration
	}
	if c.broken {
		return stopIteration
	}
	defer c.guard("on_read", &status)
	return C.envoy_dynamic_module_type_on_network_filter_data_status(c.filter.OnRead(int(dataLength), bool(endStream)))
}

//export envoy_dynamic_module_on_network_filter_write
func envoy_dynamic_module_on_network_filter_write(
	envoyPtr C.envoy_dynamic_module_type_network_filter_envoy_ptr,
	filterPtr C.envoy_dynamic_module_type_network_filter_module_ptr,
	dataLength C.size_t, endStream C.bool,
) (status C.envoy_dynamic_module_type_on_network_filter_data_status) {
	c, ok := lookup(envoyPtr, filterPtr)
	if !ok {
		return continueStatus // not ours to hold back
	}
	if c.writingToClient {
		return continueStatus // our own WriteToClient passing through the write chain
	}
	if c.broken {
		return stopIteration
	}
	defer c.guard("on_write", &status)
	return C.envoy_dynamic_module_type_on_network_filter_data_status(c.filter.OnWrite(int(dataLength), bool(endStream)))
}

//export envoy_dynamic_module_on_network_filter_event
func envoy_dynamic_module_on_network_filter_event(
	envoyPtr C.envoy_dynamic_module_type_network_filter_envoy_ptr,
	filterPtr C.envoy_dynamic_module_type_network_filter_module_ptr,
	event C.envoy_dynamic_module_type_network_connection_event,
) {
	c, ok := lookup(envoyPtr, filterPtr)
	if !ok {
		return
	}
	defer c.guard("on_event", nil)
	c.filter.OnEvent(host.ConnectionEvent(event))
}

//export envoy_dynamic_module_on_network_filter_scheduled
func envoy_dynamic_module_on_network_filter_scheduled(
	envoyPtr C.envoy_dynamic_module_type_network_filter_envoy_ptr,
	filterPtr C.envoy_dynamic_module_type_network_filter_module_ptr,
	eventID C.uint64_t,
) {
	c, ok := lookup(envoyPtr, filterPtr)
	if !ok {
		return
	}
	defer c.guard("on_scheduled", nil)
	for _, fn := range c.posted.take() {
		if c.broken {
			return
		}
		fn()
	}
}

//export envoy_dynamic_module_on_network_filter_config_scheduled
func envoy_dynamic_module_on_network_filter_config_scheduled(
	configPtr C.envoy_dynamic_module_type_network_filter_config_module_ptr, eventID C.uint64_t,
) {
	// No config-level events are committed today; present so Envoy's optional lookup succeeds.
}

//export envoy_dynamic_module_on_network_filter_above_write_buffer_high_watermark
func envoy_dynamic_module_on_network_filter_above_write_buffer_high_watermark(
	envoyPtr C.envoy_dynamic_module_type_network_filter_envoy_ptr,
	filterPtr C.envoy_dynamic_module_type_network_filter_module_ptr,
) {
	c, ok := lookup(envoyPtr, filterPtr)
	if !ok {
		return
	}
	if c.broken {
		return
	}
	defer c.guard("on_above_high_watermark", nil)
	c.filter.OnWatermark(true)
}

//export envoy_dynamic_module_on_network_filter_below_write_buffer_low_watermark
func envoy_dynamic_module_on_network_filter_below_write_buffer_low_watermark(
	envoyPtr C.envoy_dynamic_module_type_network_filter_envoy_ptr,
	filterPtr C.envoy_dynamic_module_type_network_filter_module_ptr,
) {
	c, ok := lookup(envoyPtr, filterPtr)
	if !ok {
		return
	}
	if c.broken {
		return
	}
	defer c.guard("on_below_low_watermark", nil)
	c.filter.OnWatermark(false)
}

//export envoy_dynamic_module_on_network_filter_destroy
func envoy_dynamic_module_on_network_filter_destroy(filterPtr C.envoy_dynamic_module_type_network_filter_module_ptr) {
	c, ok := conns.remove(unsafe.Pointer(filterPtr))
	if !ok {
		return
	}
	// The scheduler is deleted under the post queue's lock so that no goroutine can commit to
	// it afterwards.
	c.posted.close(func() {
		if c.scheduler != nil {
			C.envoy_dynamic_module_callback_network_filter_scheduler_delete(c.scheduler)
			c.scheduler = nil
		}
	})
	c.destroyed = true
	c.freeChunks()
	defer recoverQuietly("on_destroy")
	c.filter.OnDestroy()
}

const (
	continueStatus = C.envoy_dynamic_module_type_on_network_filter_data_status(host.Continue)
	stopIteration  = C.envoy_dynamic_module_type_on_network_filter_data_status(host.StopIteration)
)

func lookup(envoyPtr C.envoy_dynamic_module_type_network_filter_envoy_ptr, filterPtr C.envoy_dynamic_module_type_network_filter_module_ptr) (*conn, bool) {
	c, ok := conns.get(unsafe.Pointer(filterPtr))
	if !ok || c.envoyPtr != envoyPtr {
		return nil, false
	}
	return c, true
}

// guard recovers a panic from the filter: the connection is closed, the panic counted and
// logged (the first one with its stack), and the hook returns StopIteration. A broken filter
// gets no more data, watermark or scheduled calls; it still gets its close event (so it can
// give its slot back and settle its gauges, under the same guard) and destroy.
func (c *conn) guard(hook string, status *C.envoy_dynamic_module_type_on_network_filter_data_status) {
	r := recover()
	if r == nil {
		return
	}
	notePanic(c.config, c, hook, r)
	if status != nil {
		*status = stopIteration
	}
	if !c.broken {
		c.broken = true
		c.Close(host.NoFlush, "tdspool_panic")
	}
}

func notePanic(fc *filterConfig, c *conn, hook string, r any) {
	panicsRecovered.Add(1)
	if fc != nil && fc.panicsOK && c != nil && c.envoyPtr != nil {
		func() {
			defer func() { _ = recover() }()
			c.IncCounter(fc.panics, 1)
		}()
	}
	first := false
	panicLogOnce.Do(func() { first = true })
	if first {
		logf(host.LogCritical, "tdspool: panic in %s, connection closed: %v\n%s", hook, r, debug.Stack())
	} else {
		logf(host.LogError, "tdspool: panic in %s, connection closed: %v", hook, r)
	}
}

func recoverQuietly(where string) {
	if r := recover(); r != nil {
		panicsRecovered.Add(1)
		logf(host.LogError, "tdspool: panic in %s: %v", where, r)
	}
}

func registeredNames() string {
	factoriesMu.Lock()
	defer factoriesMu.Unlock()
	s := ""
	for name := range factories {
		if s != "" {
			s += ", "
		}
		s += fmt.Sprintf("%q", name)
	}
	return s
}
