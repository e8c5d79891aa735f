// Command inplace-manager is the inplace admission webhook and rollout
// controller. All the work is in package app.
package main

import (
	"os"

	"github.com/inplace-dev/inplace/cmd/inplace-manager/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:]))
}
