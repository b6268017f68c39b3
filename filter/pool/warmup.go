package pool

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/tdspool/tdspool/tds"
)

// Warmup is how a bucket keeps MinIdle backends logged in before any
// client asks: with credentials the operator supplies for that purpose,
// never with a password a client once sent.
type Warmup struct {
	User     string
	Database string
	AppName  string
	Language string
	// Secret names where the password is read from.
	Secret SecretSource
}

// SecretSource names one place holding a secret: a file (its content, one
// trailing newline removed, as Kubernetes and Docker secrets are mounted)
// or an environment variable. Exactly one is set.
type SecretSource struct {
	File string
	Env  string
}

// ErrNoSecret is returned for a source with neither field set.
var ErrNoSecret = errors.New("pool: secret source names neither a file nor an environment variable")

// Check reports what is wrong with the source without reading the secret
// into memory beyond the call: both or neither set, file unreadable,
// variable unset, secret empty.
func (s SecretSource) Check() error {
	_, err := s.Load()
	return err
}

// Load reads the secret. Errors name the source, never the secret.
func (s SecretSource) Load() (tds.Password, error) {
	switch {
	case s.File != "" && s.Env != "":
		return tds.Password{}, fmt.Errorf("pool: secret source names both file %q and environment variable %q", s.File, s.Env)
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return tds.Password{}, fmt.Errorf("pool: reading secret file: %w", err)
		}
		v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if v == "" {
			return tds.Password{}, fmt.Errorf("pool: secret file %q is empty", s.File)
		}
		return tds.NewPassword(v), nil
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok {
			return tds.Password{}, fmt.Errorf("pool: environment variable %q is not set", s.Env)
		}
		if v == "" {
			return tds.Password{}, fmt.Errorf("pool: environment variable %q is empty", s.Env)
		}
		return tds.NewPassword(v), nil
	}
	return tds.Password{}, ErrNoSecret
}

// Login7 builds the warm-up login from template, a LOGIN7 as the bucket's
// clients send it (its option flags, LCID, features and TDS version decide
// which clients' key the warm backends serve), with the warm-up user,
// database, app name, language and password put in, SESSIONRECOVERY
// stripped and per-client fields cleared.
func (w Warmup) Login7(template *tds.Login7, password tds.Password) *tds.Login7 {
	l := *template
	l.Features = append([]tds.Feature(nil), template.Features...)
	l.FeatureExtRaw = nil
	l.UserName, l.Password, l.Database, l.AppName, l.Language = w.User, password, w.Database, w.AppName, w.Language
	l.HostName, l.ClientPID, l.ConnectionID, l.ClientID = "tdspool-warmup", 0, 0, [6]byte{}
	l.SSPI, l.AtchDBFile, l.ChangePassword = nil, "", tds.Password{}
	l.TDSVersion = tds.BackendTDSVersion(l.TDSVersion)
	tds.StripSessionRecovery(&l)
	return &l
}
