package standin_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/tdspool/tdspool/standin"
)

// A server configured to redirect answers the login with a routing
// ENVCHANGE; go-mssqldb follows it and lands on the target.
func TestRoutingEnvChange(t *testing.T) {
	target := start(t, standin.Config{ServerName: "replica", Databases: []string{"tenant_a"}})
	gateway := start(t, standin.Config{ServerName: "gateway", Databases: []string{"tenant_a"}, Redirect: target.Addr()})
	db, _ := sql.Open("sqlserver", dsn(gateway, "demo", "Demo-Passw0rd", "tenant_a"))
	defer db.Close()
	var name string
	if err := db.QueryRowContext(context.Background(), "SELECT @@SERVERNAME").Scan(&name); err != nil {
		t.Fatal(err)
	}
	if name != "replica" {
		t.Fatalf("landed on %q, want replica", name)
	}
	if g, r := gateway.Stats(), target.Stats(); g.Redirects != 1 || r.Logins != 1 {
		t.Fatalf("gateway %+v target %+v", g, r)
	}
	gateway.SetRedirect("")
	db2, _ := sql.Open("sqlserver", dsn(gateway, "demo", "Demo-Passw0rd", "tenant_a"))
	defer db2.Close()
	if err := db2.QueryRowContext(context.Background(), "SELECT @@SERVERNAME").Scan(&name); err != nil || name != "gateway" {
		t.Fatalf("without redirect: %q %v", name, err)
	}
	if _, err := standin.New(standin.Config{Users: map[string]string{"a": "b"}, Redirect: "nohostport"}); err == nil {
		t.Fatal("bad Redirect accepted")
	}
}
