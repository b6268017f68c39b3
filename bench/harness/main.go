package harness

// Main is `tdsbench run`.
func Main(args []string) error { return nil }
