package filter

import (
	"crypto/tls"
	"os"
)

func passwordFromEnv(name string) string {
	if name == "" {
		return ""
	}
	return os.Getenv(name)
}

func tlsConfigForRedis() *tls.Config { return &tls.Config{MinVersion: tls.VersionTLS12} }
