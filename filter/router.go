package filter

import (
	"strings"

	"github.com/tdspool/tdspool/proto/tdspoolpb"
)

// loginFacts are what routing and policy look at, taken from LOGIN7 (and the TLS SNI).
type loginFacts struct {
	ServerName string // LOGIN7 ServerName without an instance suffix, or the SNI
	Database   string
	User       string
}

// router picks a bucket for a login: the first matching rule, else the default bucket.
type router struct {
	rules         []*tdspoolpb.Route
	defaultBucket string
}

// route returns the bucket name, or "" when nothing matches.
func (r router) route(f loginFacts) string {
	for _, rule := range r.rules {
		if matches(rule.ServerName, f.ServerName) && matches(rule.Database, f.Database) && matches(rule.User, f.User) {
			return rule.Bucket
		}
	}
	return r.defaultBucket
}

// matches compares case-insensitively, as SQL Server compares names by default; an empty
// pattern matches anything and a trailing '*' matches a prefix.
func matches(pattern, value string) bool {
	if pattern == "" || pattern == "*" {
		return true
	}
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return len(value) >= len(prefix) && strings.EqualFold(value[:len(prefix)], prefix)
	}
	return strings.EqualFold(pattern, value)
}

// serverNameOf strips the instance ("host\instance") and port ("host,1433") suffixes drivers
// put in LOGIN7 ServerName.
func serverNameOf(loginServer string) string {
	if i := strings.IndexAny(loginServer, `\,`); i >= 0 {
		loginServer = loginServer[:i]
	}
	return loginServer
}

// allowed applies a bucket's allow-lists; empty lists allow everyone.
func allowed(list []string, value string) bool {
	if len(list) == 0 {
		return true
	}
	for _, v := range list {
		if strings.EqualFold(v, value) {
			return true
		}
	}
	return false
}
