// Package compat holds the driver workloads that check the stand-in, and the proxy in front
// of it, against real SQL Server drivers: go-mssqldb in process (RunGo), python-tds and
// pymssql (FreeTDS) as child processes running the embedded Python scripts (RunPytds,
// RunPymssql). The same workload runs against the stand-in directly and through Envoy.
package compat
