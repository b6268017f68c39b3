package standin_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/tdspool/tdspool/standin"
)

func loginErr(srv *standin.Server, user, pass string) (int32, error) {
	db, _ := sql.Open("sqlserver", dsn(srv, user, pass, "master"))
	defer db.Close()
	err := db.Ping()
	var me mssql.Error
	if errors.As(err, &me) {
		return me.All[0].Number, err
	}
	return 0, err
}

// Logins change while the server runs: by an admin in T-SQL and through
// the Go API; sessions already logged in are not affected.
func TestLoginsManagedAtRunTime(t *testing.T) {
	srv := start(t, standin.Config{Users: map[string]string{"admin": "Adm1n!", "app": "App-1"}, Admins: []string{"admin"}})
	admin, _ := sql.Open("sqlserver", dsn(srv, "admin", "Adm1n!", "master"))
	defer admin.Close()
	appDB, _ := sql.Open("sqlserver", dsn(srv, "app", "App-1", "master"))
	defer appDB.Close()
	ctx := context.Background()
	appConn, err := appDB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer appConn.Close()
	exec := func(db interface {
		ExecContext(context.Context, string, ...any) (sql.Result, error)
	}, q string, want int32) {
		t.Helper()
		_, err := db.ExecContext(ctx, q)
		var me mssql.Error
		if want == 0 && err != nil || want != 0 && (!errors.As(err, &me) || me.Number != want) {
			t.Fatalf("%s: %v, want %d", q, err, want)
		}
	}
	before := srv.Stats().FailedLogins
	exec(admin, "ALTER LOGIN app WITH PASSWORD = 'App-2'", 0)
	if n, _ := loginErr(srv, "app", "App-1"); n != 18456 {
		t.Errorf("old password: %d, want 18456", n)
	}
	if n, err := loginErr(srv, "app", "App-2"); err != nil {
		t.Errorf("new password: %d %v", n, err)
	}
	var one int
	if err := appConn.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Errorf("a session logged in before the change: %v", err)
	}
	exec(admin, "ALTER LOGIN app DISABLE", 0)
	if n, err := loginErr(srv, "app", "App-2"); n != 18470 {
		t.Errorf("disabled login: %d %v, want 18470", n, err)
	}
	exec(admin, "ALTER LOGIN app ENABLE", 0)
	if _, err := loginErr(srv, "app", "App-2"); err != nil {
		t.Errorf("enabled again: %v", err)
	}
	exec(appConn, "ALTER LOGIN admin DISABLE", 15151)                                      // not an admin
	exec(appConn, "ALTER LOGIN app WITH PASSWORD = 'App-3' OLD_PASSWORD = 'wrong'", 15151) //
	exec(appConn, "ALTER LOGIN app WITH PASSWORD = 'App-3' OLD_PASSWORD = 'App-2'", 0)     // own password
	exec(admin, "CREATE LOGIN late WITH PASSWORD = 'L8', CHECK_POLICY = OFF", 0)
	exec(admin, "CREATE LOGIN late WITH PASSWORD = 'L8'", 15025)
	if _, err := loginErr(srv, "late", "L8"); err != nil {
		t.Errorf("created login: %v", err)
	}
	exec(admin, "DROP LOGIN late", 0)
	// The Go API.
	srv.DisableLogin("app")
	if n, _ := loginErr(srv, "app", "App-3"); n != 18470 {
		t.Errorf("disabled via API: %d", n)
	}
	srv.EnableLogin("app")
	srv.SetPassword("app", "App-4")
	if _, err := loginErr(srv, "app", "App-4"); err != nil {
		t.Errorf("password via API: %v", err)
	}
	if got := srv.Stats().FailedLogins - before; got != 3 {
		t.Errorf("failed logins counted %d, want 3 (old password, disabled twice)", got)
	}
	// The login cost.
	srv.SetLoginDelay(300 * time.Millisecond)
	start := time.Now()
	if _, err := loginErr(srv, "app", "App-4"); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Errorf("login took %v with a 300 ms login delay", el)
	}
}
