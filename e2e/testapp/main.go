// Command testapp is the application the end-to-end tests roll out: an HTTP
// server whose answer names the image it was built into, so a test can ask a
// running container which version it is.
//
//	GET /         the version, one line (e.g. "v2")
//	GET /healthz  "ok"
//	GET /limits   the cpu quota and memory limit the container runs under,
//	              as its cgroup says (v1 or v2): "cpu <quota>/<period> memory <bytes>"
//
// The version is set at build time with -ldflags "-X main.version=v2". A build
// with -X main.crash=true exits 1 at once instead: the image of a crash loop.
// One with -X main.unready=true serves, but answers /healthz with 503: the
// image of a release that runs and never becomes ready.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

var (
	version = "dev"
	crash   = ""
	unready = ""
)

func main() {
	listen := flag.String("listen", ":8080", "address to serve on")
	exit := flag.Bool("exit", false, "print the version and exit 0 (an init container)")
	flag.Parse()
	if *exit {
		fmt.Println(version)
		return
	}
	if crash != "" {
		fmt.Fprintf(os.Stderr, "testapp %s: exiting with status 1 on purpose\n", version)
		os.Exit(1)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, version)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if unready != "" {
			http.Error(w, "never ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /limits", func(w http.ResponseWriter, _ *http.Request) {
		cpu, memory, err := limits()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "cpu %s memory %s\n", cpu, memory)
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()

	log.Printf("testapp %s serving on %s", version, *listen)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// limits reads the container's cpu quota ("<quota>/<period>", quota "max"
// for none) and memory limit (bytes, "max" for none) from its cgroup: the
// values the kubelet set, which a resize changes in place.
func limits() (cpu, memory string, err error) {
	read := func(path string) (string, error) {
		b, err := os.ReadFile(path)
		return strings.TrimSpace(string(b)), err
	}
	if v, err := read("/sys/fs/cgroup/cpu.max"); err == nil { // cgroup v2: "<quota|max> <period>"
		quota, period, _ := strings.Cut(v, " ")
		mem, err := read("/sys/fs/cgroup/memory.max")
		return quota + "/" + period, mem, err
	}
	quota, err := read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
	if err != nil {
		return "", "", err
	}
	if quota == "-1" {
		quota = "max"
	}
	period, err := read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
	if err != nil {
		return "", "", err
	}
	mem, err := read("/sys/fs/cgroup/memory/memory.limit_in_bytes")
	return quota + "/" + period, mem, err
}
