package filter

import (
	"reflect"
	"testing"

	"github.com/tdspool/tdspool/envoy/host"
)

// TestEveryStatIsDefinedOnce catches a stat field left undefined: its zero id would silently
// alias the first metric defined.
func TestEveryStatIsDefinedOnce(t *testing.T) {
	h := newHarness(t, testConfig)
	seen := map[host.MetricID]string{}
	var walk func(path string, v reflect.Value)
	walk = func(path string, v reflect.Value) {
		switch {
		case v.Type() == reflect.TypeOf(host.MetricID(0)):
			id := host.MetricID(v.Uint())
			if prev, dup := seen[id]; dup {
				t.Errorf("%s and %s share metric id %d (one is not defined)", prev, path, id)
			}
			seen[id] = path
		case v.Kind() == reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				walk(path+"."+v.Type().Field(i).Name, v.Field(i))
			}
		case v.Kind() == reflect.Array:
			for i := 0; i < v.Len(); i++ {
				walk(path, v.Index(i))
			}
		case v.Kind() == reflect.Map:
			for _, k := range v.MapKeys() {
				walk(path, v.MapIndex(k))
			}
		}
	}
	walk("global", reflect.ValueOf(h.f.stats))
	for name, b := range h.f.buckets {
		walk("bucket "+name, reflect.ValueOf(b.stats))
	}
}
