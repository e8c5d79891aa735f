// Command testapp is the application the end-to-end tests roll out: an HTTP
// server whose answer names the image it was built into, so a test can ask a
// running container which version it is.
//
//	GET /         the version, one line (e.g. "v2")
//	GET /healthz  "ok"
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
