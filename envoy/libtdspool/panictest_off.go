//go:build !tdspool_panictest

package main

import "github.com/tdspool/tdspool/envoy/host"

func wrapForTests(f host.ConfigFactory) host.ConfigFactory { return f }
