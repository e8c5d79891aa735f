package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/inplace-dev/inplace/cmd/inplace-manager/app"
	"github.com/inplace-dev/inplace/hack/internal/bench"
	inplacewebhook "github.com/inplace-dev/inplace/webhook"
)

// The two servers run in processes of their own (this program, run again
// with serve-manager or serve-floor), as the manager does in a cluster: the
// load generator's own work and garbage stay out of them, and each has the
// heap it would have.

// serveManager runs inplace-manager itself (app.Main, what
// cmd/inplace-manager runs) with the flags after the optional -cpuprofile.
func serveManager(args []string) int {
	fs := flag.NewFlagSet("serve-manager", flag.ContinueOnError)
	profile := fs.String("cpuprofile", "", "write a CPU profile of the manager to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		}()
	}
	return app.Main(fs.Args())
}

// serveFloor serves, at every path the load calls, a typed
// controller-runtime handler that does nothing (a Defaulter or a Validator
// of the path's kind): what any controller-runtime webhook costs, decoding
// included. It is served as the manager serves its handlers: the same
// server, TLS 1.2 at least, HTTP/1.1 only.
func serveFloor(args []string) int {
	fs := flag.NewFlagSet("serve-floor", flag.ContinueOnError)
	certDir := fs.String("cert-dir", "", "directory of tls.crt and tls.key")
	host := fs.String("host", "127.0.0.1", "address to listen on")
	port := fs.Int("port", 0, "port to listen on")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctrl.SetLogger(zap.New()) // the manager's default: JSON, info
	scheme := app.Scheme()
	srv := webhook.NewServer(webhook.Options{
		Host: *host, Port: *port, CertDir: *certDir,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) {
			c.MinVersion = tls.VersionTLS12
			c.NextProtos = []string{"http/1.1"}
		}},
	})
	srv.Register(inplacewebhook.PathMutatePod, admission.WithDefaulter(scheme, nothing[*corev1.Pod]{}))
	srv.Register(inplacewebhook.PathValidatePod, admission.WithValidator(scheme, nothing[*corev1.Pod]{}))
	srv.Register(inplacewebhook.PathMutateStatefulSet, admission.WithDefaulter(scheme, nothing[*appsv1.StatefulSet]{}))
	srv.Register(inplacewebhook.PathValidateStatefulSet, admission.WithValidator(scheme, nothing[*appsv1.StatefulSet]{}))
	srv.Register(inplacewebhook.PathMutateDeployment, admission.WithDefaulter(scheme, nothing[*appsv1.Deployment]{}))
	srv.Register(inplacewebhook.PathValidateDeployment, admission.WithValidator(scheme, nothing[*appsv1.Deployment]{}))
	if err := srv.Start(ctrl.SetupSignalHandler()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// nothing is a Defaulter and a Validator that does nothing.
type nothing[T runtime.Object] struct{}

func (nothing[T]) Default(context.Context, T) error { return nil }
func (nothing[T]) ValidateCreate(context.Context, T) (admission.Warnings, error) {
	return nil, nil
}
func (nothing[T]) ValidateUpdate(context.Context, T, T) (admission.Warnings, error) {
	return nil, nil
}
func (nothing[T]) ValidateDelete(context.Context, T) (admission.Warnings, error) {
	return nil, nil
}

// server is a child process serving admission reviews.
type server struct {
	*bench.Process
	// url is where it serves; metrics its Prometheus endpoint, if any.
	url, metrics string
	client       *http.Client
}

// apiRequests returns the number of requests the manager has made to the
// API server (controller-runtime's rest_client_requests_total, all codes,
// methods and hosts).
func apiRequests(metricsURL string) (float64, error) {
	resp, err := http.Get(metricsURL)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var total float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "rest_client_requests_total{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, err
		}
		total += v
	}
	return total, sc.Err()
}

// newClient is the load's client of one server: TLS verified against the
// test CA, HTTP/1.1 with keep-alive (as the API server calls webhooks), as
// many connections as the load needs, each reused.
func newClient(pool *x509.CertPool, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}},
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     5 * time.Minute,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
		},
	}
}

var errWrongAnswer = errors.New("wrong answer")
