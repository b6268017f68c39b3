package standin

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/tdspool/tdspool/tds"
)

// Logins managed at run time: passwords change and logins are disabled,
// enabled, created and dropped by an admin login in T-SQL (CREATE/ALTER/
// DROP LOGIN) or through the Go API, as a DBA would do under a pooler.
// Sessions already logged in are not affected, as in SQL Server.

type login struct {
	name     string // configured spelling
	password string
	disabled bool
}

type logins struct {
	mu    sync.Mutex
	byKey map[string]*login // lower-case name
}

func newLogins(users map[string]string) *logins {
	l := &logins{byKey: map[string]*login{}}
	for u, p := range users {
		l.byKey[strings.ToLower(u)] = &login{name: u, password: p}
	}
	return l
}

// loginResult is what authentication decided.
type loginResult uint8

const (
	loginOK loginResult = iota
	loginBad
	loginDisabled
)

func (l *logins) check(user, password string) loginResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	lg := l.byKey[strings.ToLower(user)]
	switch {
	case lg == nil || lg.password != password:
		return loginBad
	case lg.disabled:
		return loginDisabled
	}
	return loginOK
}

func (l *logins) update(name string, f func(*login)) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	lg := l.byKey[strings.ToLower(name)]
	if lg == nil {
		return false
	}
	f(lg)
	return true
}

// SetPassword changes a login's password; false when there is no such login.
func (s *Server) SetPassword(name, password string) bool {
	return s.accounts.update(name, func(l *login) { l.password = password })
}

// DisableLogin makes new logins of name fail with 18470 (ALTER LOGIN ...
// DISABLE); EnableLogin undoes it.
func (s *Server) DisableLogin(name string) bool {
	return s.accounts.update(name, func(l *login) { l.disabled = true })
}

// EnableLogin re-enables a disabled login.
func (s *Server) EnableLogin(name string) bool {
	return s.accounts.update(name, func(l *login) { l.disabled = false })
}

// AddLogin creates or replaces a login.
func (s *Server) AddLogin(name, password string) {
	s.accounts.mu.Lock()
	s.accounts.byKey[strings.ToLower(name)] = &login{name: name, password: password}
	s.accounts.mu.Unlock()
}

// RemoveLogin drops a login; false when there is none.
func (s *Server) RemoveLogin(name string) bool {
	s.accounts.mu.Lock()
	defer s.accounts.mu.Unlock()
	key := strings.ToLower(name)
	if s.accounts.byKey[key] == nil {
		return false
	}
	delete(s.accounts.byKey, key)
	return true
}

// SetLoginDelay changes Config.LoginDelay at run time.
func (s *Server) SetLoginDelay(d time.Duration) { s.loginDelay.Store(int64(d)) }

func (s *Server) isAdmin(name string) bool {
	for _, a := range s.cfg.Admins {
		if strings.EqualFold(a, name) {
			return true
		}
	}
	return false
}

// loginCost waits Config.LoginDelay before a password is checked: what
// real authentication (hashing, policy, auditing) costs a server per login.
func (s *Server) loginCost(ctx context.Context) {
	d := time.Duration(s.loginDelay.Load())
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func loginDisabledMsg(user string) tds.ServerMessage {
	return tds.ServerMessage{Number: 18470, State: 1, Class: 14, Text: fmt.Sprintf("Login failed for user '%s'. Reason: The account is disabled.", user), Line: 1}
}

// loginDDL runs CREATE LOGIN name WITH PASSWORD = '...', ALTER LOGIN name
// { WITH PASSWORD = '...' [OLD_PASSWORD = '...'] | DISABLE | ENABLE } and
// DROP LOGIN name. Only Config.Admins may manage other logins; a login may
// change its own password by giving OLD_PASSWORD.
func (s *session) loginDDL(ctx context.Context, r *resp, st []token, vars map[string]any, inProc bool) *sqlError {
	verb := st[0].upper
	if len(st) < 3 {
		return syntaxErr(joinTokens(st))
	}
	name, ok := st[2].name()
	if !ok {
		return syntaxErr(st[2].text)
	}
	noPerm := errf(15151, 1, 16, fmt.Sprintf("Cannot %s the login '%s', because it does not exist or you do not have permission.", strings.ToLower(verb), name))
	srv := s.c.srv
	admin := srv.isAdmin(s.login)
	opts := map[string]string{}
	rest := st[3:]
	action := ""
	if len(rest) > 0 && (rest[0].upper == "DISABLE" || rest[0].upper == "ENABLE") {
		action = rest[0].upper
	} else if len(rest) > 0 && rest[0].upper == "WITH" {
		// name = value pairs, with or without commas (PASSWORD = 'x'
		// OLD_PASSWORD = 'y', CHECK_POLICY = OFF); unknown ones are ignored.
		w := rest[1:]
		for k := 0; k+2 < len(w); k++ {
			if w[k].k != tkWord || w[k+1].text != "=" {
				continue
			}
			v, e := s.eval(ctx, w[k+2:k+3], vars)
			if e != nil && w[k+2].k != tkWord {
				return e
			}
			if e == nil {
				opts[w[k].upper] = fmt.Sprint(nz(v))
			}
			k += 2
		}
	}
	switch verb {
	case "CREATE":
		if !admin {
			return errf(15247, 1, 16, "User does not have permission to perform this action.")
		}
		pw, ok := opts["PASSWORD"]
		if !ok {
			return syntaxErr(name)
		}
		srv.accounts.mu.Lock()
		exists := srv.accounts.byKey[strings.ToLower(name)] != nil
		srv.accounts.mu.Unlock()
		if exists {
			return errf(15025, 1, 16, fmt.Sprintf("The server principal '%s' already exists.", name))
		}
		srv.AddLogin(name, pw)
	case "DROP":
		if !admin || !srv.RemoveLogin(name) {
			return noPerm
		}
	case "ALTER":
		self := strings.EqualFold(name, s.login)
		switch {
		case action == "DISABLE" && admin:
			if !srv.DisableLogin(name) {
				return noPerm
			}
		case action == "ENABLE" && admin:
			if !srv.EnableLogin(name) {
				return noPerm
			}
		case action == "" && opts["PASSWORD"] != "":
			old, hasOld := opts["OLD_PASSWORD"]
			if !admin && !(self && hasOld) {
				return noPerm
			}
			if hasOld && srv.accounts.check(name, old) == loginBad {
				return errf(15151, 1, 16, fmt.Sprintf("Cannot alter the login '%s', because it does not exist or you do not have permission.", name))
			}
			if !srv.SetPassword(name, opts["PASSWORD"]) {
				return noPerm
			}
		default:
			return noPerm
		}
	}
	s.stmtDone(r, inProc, 0, 0, false)
	return nil
}
