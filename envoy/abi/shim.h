// Small C helpers for the Go binding: opaque handles travel to Envoy as pointer-sized
// integers, never as Go pointers.
#ifndef TDSPOOL_SHIM_H
#define TDSPOOL_SHIM_H
#include <stdint.h>
const void* tdspool_handle_to_ptr(uintptr_t handle);
uintptr_t tdspool_ptr_to_handle(const void* ptr);
#endif
