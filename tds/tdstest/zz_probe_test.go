package tdstest
import ("testing";"database/sql";_ "modernc.org/sqlite")
func TestX(t *testing.T){
 db,err:=sql.Open("sqlite","file:/tmp/sqlt/x.db?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
 if err!=nil{t.Fatal(err)}
 _,err=db.Exec(`DROP TABLE IF EXISTS t; CREATE TABLE t(a NVARCHAR(-1), b DECIMAL_TEXT(18,4), c DATETIME2(7), d "#x", e DATE)`)
 if err!=nil{t.Fatal(err)}
 _,err=db.Exec(`CREATE TEMP TABLE "#t"(a INT)`); if err!=nil{t.Fatal(err)}
 db.Exec(`INSERT INTO t VALUES('x', 12.5, '2024-01-01 10:00:00', 1, '2024-01-02')`)
 rows,err:=db.Query(`SELECT a,b,c,d,e, a AS z, 1+1, @p FROM t`, sql.Named("p", 5)); if err!=nil{t.Fatal(err)}
 ct,_:=rows.ColumnTypes(); for _,c:=range ct{t.Log(c.Name(), c.DatabaseTypeName())}
 for rows.Next(){ v:=make([]any,8); p:=make([]any,8); for i:=range v{p[i]=&v[i]}; rows.Scan(p...); for _,x:=range v{t.Logf("%T %v",x,x)}}
}
