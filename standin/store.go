package standin

import (
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"

	_ "modernc.org/sqlite" // pure-Go SQLite driver, registered as "sqlite"
)

// store owns one SQLite file per database: <DataDir>/<name>.sqlite. Every
// session holds one dedicated SQLite connection (*sql.Conn) to its current
// database, which is what makes #temp tables (SQLite TEMP tables) private
// to the session and lets BEGIN/COMMIT map onto SQLite transactions.
type store struct {
	dbs   map[string]*sql.DB // lower-case name → pool
	canon map[string]string  // lower-case name → configured spelling
	paths map[string]string  // lower-case name → SQLite file (ATTACHed for db.schema.table)
	names []string           // configured spellings, master first
}

var dbNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

func validDBName(s string) bool { return dbNameRE.MatchString(s) }

func openStore(dir string, names []string) (*store, error) {
	st := &store{dbs: map[string]*sql.DB{}, canon: map[string]string{}, paths: map[string]string{}}
	for _, n := range names {
		key := strings.ToLower(n)
		if _, dup := st.dbs[key]; dup {
			continue
		}
		path := filepath.Join(dir, n+".sqlite")
		// WAL lets readers run beside a writer; busy_timeout turns lock
		// conflicts between sessions into waits (like SQL Server lock
		// waits) instead of immediate SQLITE_BUSY errors.
		dsn := "file:" + (&url.URL{Path: path}).EscapedPath() +
			"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
		db, err := sql.Open("sqlite", dsn)
		if err != nil {
			st.close()
			return nil, fmt.Errorf("standin: open %s: %w", path, err)
		}
		if err := db.Ping(); err != nil {
			st.close()
			return nil, fmt.Errorf("standin: open %s: %w", path, err)
		}
		// No idle connections: a released session connection is closed, so
		// nothing (temp tables, an open transaction) can leak to the next session.
		db.SetMaxIdleConns(0)
		st.dbs[key], st.canon[key], st.paths[key] = db, n, path
		st.names = append(st.names, n)
	}
	return st, nil
}

// canonical returns the configured spelling of a database name; names
// compare case-insensitively like SQL Server's default collation.
func (st *store) canonical(name string) (string, bool) {
	c, ok := st.canon[strings.ToLower(name)]
	return c, ok
}

// id is the database_id DB_ID() and sys.dm_exec_sessions report: master
// is 1 and, as SQL Server's system databases take 2..4, the configured
// ones count from 5 in configuration order.
func (st *store) id(name string) int {
	for i, n := range st.names {
		if strings.EqualFold(n, name) {
			if i == 0 {
				return 1
			}
			return 4 + i
		}
	}
	return 0
}

func (st *store) db(name string) *sql.DB { return st.dbs[strings.ToLower(name)] }

func (st *store) close() {
	for _, db := range st.dbs {
		db.Close()
	}
}
