package abi

/*
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "abi/abi.h"

// Envoy hands the shutdown hook a C function pointer to call when the module is done; Go can
// only call C functions by name, so this one calls the pointer.
static inline void tdspool_call_event_cb(envoy_dynamic_module_type_event_cb cb, void* ctx) { cb(ctx); }
*/
import "C"

import (
	"runtime/debug"
	"sync"
	"unsafe"

	"github.com/tdspool/tdspool/envoy/host"
)

// The bootstrap extension (envoy.bootstrap.dynamic_modules in the bootstrap's
// bootstrap_extensions, loading this same module) is the only part of ABI v0.1.0 that hears
// about the process: the server-wide drain (hot restart, /drain_listeners), listener updates
// and removals (LDS) and shutdown. A network filter config hears none of these. Envoy 1.39.3
// resolves every hook below and refuses the extension if one is missing, so the hooks this
// module does not use are present and do nothing.

var (
	lifecycleMu        sync.Mutex
	lifecycleFactories = map[string]host.LifecycleFactory{}

	bootstrapConfigs = newRegistry[*bootstrapConfig]()
	bootstrapExts    = newRegistry[*bootstrapConfig]()
)

// RegisterLifecycle makes factory available under extension_name in a bootstrap extension.
// Call it from an init function of the module's main package.
func RegisterLifecycle(extensionName string, factory host.LifecycleFactory) {
	lifecycleMu.Lock()
	defer lifecycleMu.Unlock()
	lifecycleFactories[extensionName] = factory
}

type bootstrapConfig struct {
	envoyPtr  C.envoy_dynamic_module_type_bootstrap_extension_config_envoy_ptr
	name      string
	lifecycle host.Lifecycle
}

// guarded runs fn and turns a panic into a log line: nothing may unwind into Envoy.
func (b *bootstrapConfig) guarded(hook string, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			panicsRecovered.Add(1)
			logf(host.LogError, "tdspool: panic in bootstrap %s (%s): %v\n%s", hook, b.name, r, debug.Stack())
		}
	}()
	fn()
}

//export envoy_dynamic_module_on_bootstrap_extension_config_new
func envoy_dynamic_module_on_bootstrap_extension_config_new(
	envoyPtr C.envoy_dynamic_module_type_bootstrap_extension_config_envoy_ptr,
	name C.envoy_dynamic_module_type_envoy_buffer,
	config C.envoy_dynamic_module_type_envoy_buffer,
) (result C.envoy_dynamic_module_type_bootstrap_extension_config_module_ptr) {
	extName := envoyString(name)
	defer func() {
		if r := recover(); r != nil {
			panicsRecovered.Add(1)
			logf(host.LogCritical, "tdspool: panic while loading bootstrap extension %q: %v\n%s", extName, r, debug.Stack())
			result = nil
		}
	}()
	lifecycleMu.Lock()
	factory := lifecycleFactories[extName]
	lifecycleMu.Unlock()
	if factory == nil {
		logf(host.LogError, "tdspool: unknown bootstrap extension_name %q", extName)
		return nil
	}
	lc, err := factory(extName, []byte(envoyString(config)), Log)
	if err != nil {
		logf(host.LogError, "tdspool: bootstrap extension %q rejected: %v", extName, err)
		return nil
	}
	b := &bootstrapConfig{envoyPtr: envoyPtr, name: extName, lifecycle: lc}
	// Envoy holds its listeners until every bootstrap extension says it is ready; this one
	// needs nothing first.
	C.envoy_dynamic_module_callback_bootstrap_extension_config_signal_init_complete(envoyPtr)
	return C.envoy_dynamic_module_type_bootstrap_extension_config_module_ptr(bootstrapConfigs.add(b))
}

//export envoy_dynamic_module_on_bootstrap_extension_config_destroy
func envoy_dynamic_module_on_bootstrap_extension_config_destroy(configPtr C.envoy_dynamic_module_type_bootstrap_extension_config_module_ptr) {
	bootstrapConfigs.remove(unsafe.Pointer(configPtr))
}

//export envoy_dynamic_module_on_bootstrap_extension_new
func envoy_dynamic_module_on_bootstrap_extension_new(
	configPtr C.envoy_dynamic_module_type_bootstrap_extension_config_module_ptr,
	extEnvoyPtr C.envoy_dynamic_module_type_bootstrap_extension_envoy_ptr,
) C.envoy_dynamic_module_type_bootstrap_extension_module_ptr {
	b, ok := bootstrapConfigs.get(unsafe.Pointer(configPtr))
	if !ok {
		return nil
	}
	return C.envoy_dynamic_module_type_bootstrap_extension_module_ptr(bootstrapExts.add(b))
}

//export envoy_dynamic_module_on_bootstrap_extension_server_initialized
func envoy_dynamic_module_on_bootstrap_extension_server_initialized(
	extEnvoyPtr C.envoy_dynamic_module_type_bootstrap_extension_envoy_ptr,
	extPtr C.envoy_dynamic_module_type_bootstrap_extension_module_ptr,
) {
	b, ok := bootstrapExts.get(unsafe.Pointer(extPtr))
	if !ok {
		return
	}
	b.guarded("server_initialized", b.lifecycle.OnServerInitialized)
	// Listener events can only be asked for once the listener manager exists (now).
	if !C.envoy_dynamic_module_callback_bootstrap_extension_enable_listener_lifecycle(b.envoyPtr) {
		logf(host.LogWarn, "tdspool: bootstrap %s: Envoy refused listener lifecycle events", b.name)
	}
}

//export envoy_dynamic_module_on_bootstrap_extension_worker_thread_initialized
func envoy_dynamic_module_on_bootstrap_extension_worker_thread_initialized(
	extEnvoyPtr C.envoy_dynamic_module_type_bootstrap_extension_envoy_ptr,
	extPtr C.envoy_dynamic_module_type_bootstrap_extension_module_ptr,
) {
}

//export envoy_dynamic_module_on_bootstrap_extension_drain_started
func envoy_dynamic_module_on_bootstrap_extension_drain_started(
	extEnvoyPtr C.envoy_dynamic_module_type_bootstrap_extension_envoy_ptr,
	extPtr C.envoy_dynamic_module_type_bootstrap_extension_module_ptr,
) {
	if b, ok := bootstrapExts.get(unsafe.Pointer(extPtr)); ok {
		b.guarded("drain_started", b.lifecycle.OnDrainStarted)
	}
}

//export envoy_dynamic_module_on_bootstrap_extension_shutdown
func envoy_dynamic_module_on_bootstrap_extension_shutdown(
	extEnvoyPtr C.envoy_dynamic_module_type_bootstrap_extension_envoy_ptr,
	extPtr C.envoy_dynamic_module_type_bootstrap_extension_module_ptr,
	done C.envoy_dynamic_module_type_event_cb, doneCtx unsafe.Pointer,
) {
	// Envoy waits for done; it is called exactly once, whatever OnShutdown does.
	defer C.tdspool_call_event_cb(done, doneCtx)
	if b, ok := bootstrapExts.get(unsafe.Pointer(extPtr)); ok {
		b.guarded("shutdown", b.lifecycle.OnShutdown)
	}
}

//export envoy_dynamic_module_on_bootstrap_extension_destroy
func envoy_dynamic_module_on_bootstrap_extension_destroy(extPtr C.envoy_dynamic_module_type_bootstrap_extension_module_ptr) {
	bootstrapExts.remove(unsafe.Pointer(extPtr))
}

//export envoy_dynamic_module_on_bootstrap_extension_listener_add_or_update
func envoy_dynamic_module_on_bootstrap_extension_listener_add_or_update(
	configEnvoyPtr C.envoy_dynamic_module_type_bootstrap_extension_config_envoy_ptr,
	configPtr C.envoy_dynamic_module_type_bootstrap_extension_config_module_ptr,
	listenerName C.envoy_dynamic_module_type_envoy_buffer,
) {
	if b, ok := bootstrapConfigs.get(unsafe.Pointer(configPtr)); ok {
		name := envoyString(listenerName)
		b.guarded("listener_add_or_update", func() { b.lifecycle.OnListenerUpdated(name) })
	}
}

//export envoy_dynamic_module_on_bootstrap_extension_listener_removal
func envoy_dynamic_module_on_bootstrap_extension_listener_removal(
	configEnvoyPtr C.envoy_dynamic_module_type_bootstrap_extension_config_envoy_ptr,
	configPtr C.envoy_dynamic_module_type_bootstrap_extension_config_module_ptr,
	listenerName C.envoy_dynamic_module_type_envoy_buffer,
) {
	if b, ok := bootstrapConfigs.get(unsafe.Pointer(configPtr)); ok {
		name := envoyString(listenerName)
		b.guarded("listener_removal", func() { b.lifecycle.OnListenerRemoved(name) })
	}
}

// The hooks below are required by Envoy and unused by tdspool.

//export envoy_dynamic_module_on_bootstrap_extension_config_scheduled
func envoy_dynamic_module_on_bootstrap_extension_config_scheduled(
	configEnvoyPtr C.envoy_dynamic_module_type_bootstrap_extension_config_envoy_ptr,
	configPtr C.envoy_dynamic_module_type_bootstrap_extension_config_module_ptr,
	eventID C.uint64_t,
) {
}

//export envoy_dynamic_module_on_bootstrap_extension_http_callout_done
func envoy_dynamic_module_on_bootstrap_extension_http_callout_done(
	configEnvoyPtr C.envoy_dynamic_module_type_bootstrap_extension_config_envoy_ptr,
	configPtr C.envoy_dynamic_module_type_bootstrap_extension_config_module_ptr,
	calloutID C.uint64_t, result C.envoy_dynamic_module_type_http_callout_result,
	headers *C.envoy_dynamic_module_type_envoy_http_header, headersSize C.size_t,
	body *C.envoy_dynamic_module_type_envoy_buffer, bodySize C.size_t,
) {
}

//export envoy_dynamic_module_on_bootstrap_extension_timer_fired
func envoy_dynamic_module_on_bootstrap_extension_timer_fired(
	configEnvoyPtr C.envoy_dynamic_module_type_bootstrap_extension_config_envoy_ptr,
	configPtr C.envoy_dynamic_module_type_bootstrap_extension_config_module_ptr,
	timer C.envoy_dynamic_module_type_bootstrap_extension_timer_module_ptr,
) {
}

//export envoy_dynamic_module_on_bootstrap_extension_file_changed
func envoy_dynamic_module_on_bootstrap_extension_file_changed(
	configEnvoyPtr C.envoy_dynamic_module_type_bootstrap_extension_config_envoy_ptr,
	configPtr C.envoy_dynamic_module_type_bootstrap_extension_config_module_ptr,
	path C.envoy_dynamic_module_type_envoy_buffer, events C.uint32_t,
) {
}

//export envoy_dynamic_module_on_bootstrap_extension_admin_request
func envoy_dynamic_module_on_bootstrap_extension_admin_request(
	configEnvoyPtr C.envoy_dynamic_module_type_bootstrap_extension_config_envoy_ptr,
	configPtr C.envoy_dynamic_module_type_bootstrap_extension_config_module_ptr,
	method, path, body C.envoy_dynamic_module_type_envoy_buffer,
) C.uint32_t {
	return 404 // no admin handler is registered
}

//export envoy_dynamic_module_on_bootstrap_extension_cluster_add_or_update
func envoy_dynamic_module_on_bootstrap_extension_cluster_add_or_update(
	configEnvoyPtr C.envoy_dynamic_module_type_bootstrap_extension_config_envoy_ptr,
	configPtr C.envoy_dynamic_module_type_bootstrap_extension_config_module_ptr,
	clusterName C.envoy_dynamic_module_type_envoy_buffer,
) {
}

//export envoy_dynamic_module_on_bootstrap_extension_cluster_removal
func envoy_dynamic_module_on_bootstrap_extension_cluster_removal(
	configEnvoyPtr C.envoy_dynamic_module_type_bootstrap_extension_config_envoy_ptr,
	configPtr C.envoy_dynamic_module_type_bootstrap_extension_config_module_ptr,
	clusterName C.envoy_dynamic_module_type_envoy_buffer,
) {
}
