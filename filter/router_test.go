package filter

import (
	"testing"

	"github.com/tdspool/tdspool/proto/tdspoolpb"
)

func TestRouterFirstMatchThenDefault(t *testing.T) {
	r := router{
		rules: []*tdspoolpb.Route{
			{ServerName: "bucket-002", Bucket: "b2"},
			{Database: "tenant_c", Bucket: "b3"},
			{User: "report*", Database: "tenant_a", Bucket: "b4"},
			{Database: "tenant_a", Bucket: "b1"},
		},
		defaultBucket: "b1",
	}
	tests := []struct {
		facts loginFacts
		want  string
	}{
		{loginFacts{ServerName: "BUCKET-002", Database: "tenant_c"}, "b2"},
		{loginFacts{ServerName: "x", Database: "Tenant_C"}, "b3"},
		{loginFacts{Database: "tenant_a", User: "Reporting"}, "b4"},
		{loginFacts{Database: "tenant_a", User: "app"}, "b1"},
		{loginFacts{Database: "other"}, "b1"},
	}
	for _, tt := range tests {
		if got := r.route(tt.facts); got != tt.want {
			t.Errorf("route(%+v) = %q, want %q", tt.facts, got, tt.want)
		}
	}
	if got := (router{}).route(loginFacts{Database: "x"}); got != "" {
		t.Errorf("no rules, no default: got %q", got)
	}
}

func TestServerNameOf(t *testing.T) {
	for in, want := range map[string]string{
		`db1\INST`: "db1", "db1,1433": "db1", "db1": "db1", "": "",
	} {
		if got := serverNameOf(in); got != want {
			t.Errorf("serverNameOf(%q) = %q, want %q", in, got, want)
		}
	}
}
