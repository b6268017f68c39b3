// Command libtdspool is the module Envoy loads: `make build` turns it into libtdspool.so
// (go build -buildmode=c-shared). Envoy finds it as lib<name>.so for dynamic_module_config
// name "tdspool" in $ENVOY_DYNAMIC_MODULES_SEARCH_PATH.
//
// The filter_name in the Envoy config selects the filter: "tdspool" is the TDS pooler.
package main

import (
	"github.com/tdspool/tdspool/envoy/abi"
	"github.com/tdspool/tdspool/filter"
)

func init() {
	abi.RegisterNetworkFilter("tdspool", wrapForTests(filter.NewFactory))
	// The same module as a bootstrap extension (extension_name "tdspool") hears Envoy's drains
	// and listener updates, which a network filter cannot.
	abi.RegisterLifecycle("tdspool", filter.NewLifecycle)
}

// main is required by -buildmode=c-shared and never runs.
func main() {}
