// Command gendashboard writes tdspool-dashboard.json from package grafana (go generate).
package main

import (
	"log"
	"os"

	"github.com/tdspool/tdspool/deployments/grafana"
)

func main() {
	out, err := grafana.Build()
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile("tdspool-dashboard.json", out, 0o644); err != nil {
		log.Fatal(err)
	}
}
