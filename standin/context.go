package standin

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
)

// Session context: CONTEXT_INFO, SESSION_CONTEXT and application roles,
// the per-session identity a pooler must not leak between clients.

type sessCtxEntry struct {
	val      any
	readOnly bool
}

// param returns a procedure argument by name (without '@', any case) or
// else by position, and whether it was given.
func param(ps []rpcParam, pos int, name string) (any, bool) {
	for _, p := range ps {
		if p.name != "" && strings.EqualFold(strings.TrimPrefix(p.name, "@"), name) {
			return p.val, true
		}
	}
	if pos < len(ps) && ps[pos].name == "" {
		return ps[pos].val, true
	}
	return nil, false
}

// setContextInfo is SET CONTEXT_INFO { 0x... | @var }: up to 128 bytes.
func (s *session) setContextInfo(ctx context.Context, r *resp, val []token, vars map[string]any, inProc bool) *sqlError {
	v, e := s.eval(ctx, val, vars)
	if e != nil {
		return e
	}
	var b []byte
	switch x := v.(type) {
	case []byte:
		b = x
	case string:
		b = []byte(x)
	case int64:
		b = []byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)}
	case nil:
		return syntaxErr("NULL")
	default:
		return syntaxErr(fmt.Sprint(x))
	}
	if len(b) > 128 {
		b = b[:128]
	}
	s.contextInfo = append([]byte(nil), b...)
	s.stmtDone(r, inProc, 0, 0, false)
	return nil
}

// setSessionContext is sp_set_session_context @key, @value [, @read_only].
func (s *session) setSessionContext(ps []rpcParam) *sqlError {
	k, ok := param(ps, 0, "key")
	key, isStr := k.(string)
	if !ok || !isStr {
		return errf(201, 4, 16, "Procedure or function 'sp_set_session_context' expects parameter '@key', which was not supplied.")
	}
	if len(key) > 128 {
		key = key[:128]
	}
	val, _ := param(ps, 1, "value")
	ro, _ := param(ps, 2, "read_only")
	roN, _ := asInt(ro)
	if old, ok := s.sessCtx[key]; ok && old.readOnly {
		return errf(15664, 1, 16, fmt.Sprintf("Cannot set key '%s' in the session context. The key has been set as read_only for this session.", key))
	}
	if s.sessCtx == nil {
		s.sessCtx = map[string]sessCtxEntry{}
	}
	s.sessCtx[key] = sessCtxEntry{val: bindBack(val), readOnly: roN != 0}
	return nil
}

// setAppRole is sp_setapprole @rolename, @password [, @encrypt,
// @fCreateCookie, @cookie OUTPUT]: USER_NAME() becomes the role's name.
func (s *session) setAppRole(ps []rpcParam, vars map[string]any) ([]outParam, *sqlError) {
	rn, _ := param(ps, 0, "rolename")
	pw, _ := param(ps, 1, "password")
	role, _ := rn.(string)
	pass, _ := pw.(string)
	if s.appRole != "" {
		return nil, errf(15422, 1, 16, "Application roles can only be activated at the ad hoc level.")
	}
	want, ok := s.c.srv.appRolePassword(role)
	if !ok || want != pass {
		return nil, errf(15151, 1, 16, fmt.Sprintf("Cannot find the application role '%s', because it does not exist or you do not have permission.", role))
	}
	s.appRole = role
	cc, _ := param(ps, 3, "fCreateCookie")
	if n, _ := asInt(cc); n == 0 {
		s.appRoleCookie = nil
		return nil, nil
	}
	cookie := make([]byte, 36)
	rand.Read(cookie)
	s.appRoleCookie = cookie
	vars["\x00cookie"] = cookie
	for i, p := range ps {
		if strings.EqualFold(strings.TrimPrefix(p.name, "@"), "cookie") || (p.name == "" && i == 4) {
			return []outParam{{ordinal: i, p: p, varName: "\x00cookie"}}, nil
		}
	}
	return nil, nil
}

// unsetAppRole is sp_unsetapprole @cookie: only the cookie sp_setapprole
// returned restores the login's own context.
func (s *session) unsetAppRole(ps []rpcParam) *sqlError {
	c, _ := param(ps, 0, "cookie")
	cookie, _ := c.([]byte)
	if s.appRole == "" || s.appRoleCookie == nil || string(cookie) != string(s.appRoleCookie) {
		return errf(15580, 1, 16, "Cannot unset application role because none was set or the cookie is invalid.")
	}
	s.appRole, s.appRoleCookie = "", nil
	return nil
}

// userName is USER_NAME(): the application role when one is active, else
// dbo (every configured login owns the databases).
func (s *session) userName() string {
	if s.appRole != "" {
		return s.appRole
	}
	return "dbo"
}

// sqlLiteral renders a Go value as a SQLite literal.
func sqlLiteral(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case int64:
		return fmt.Sprint(x)
	case float64:
		return fmt.Sprint(x)
	case bool:
		if x {
			return "1"
		}
		return "0"
	case []byte:
		return fmt.Sprintf("X'%X'", x)
	}
	return "'" + strings.ReplaceAll(fmt.Sprint(v), "'", "''") + "'"
}
