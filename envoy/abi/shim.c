#include "shim.h"

const void* tdspool_handle_to_ptr(uintptr_t handle) { return (const void*)handle; }

uintptr_t tdspool_ptr_to_handle(const void* ptr) { return (uintptr_t)ptr; }
