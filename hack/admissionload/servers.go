package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/inplace-dev/inplace/cmd/inplace-manager/app"
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
	name string
	cmd  *exec.Cmd
	// url is where it serves; metrics its Prometheus endpoint, if any.
	url, metrics string
	client       *http.Client
	exited       chan error
}

// start runs this program again as a server, with env added to its
// environment and its output to log.
func start(name, log string, env []string, args ...string) (*server, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	out, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return nil, err
	}
	s := &server{name: name, cmd: cmd, exited: make(chan error, 1)}
	go func() {
		s.exited <- cmd.Wait()
		_ = out.Close()
	}()
	return s, nil
}

// stop ends the server: SIGTERM, and SIGKILL after a grace period.
func (s *server) stop() {
	if s == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// waitReady polls check until it succeeds, the server exits or the timeout.
func (s *server) waitReady(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case exit := <-s.exited:
			return fmt.Errorf("%s exited: %v", s.name, exit)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %w", s.name, timeout, err)
		}
	}
}

// cpu returns the CPU time the process has used.
func cpu(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command's closing parenthesis: state is the
	// 3rd field of stat, utime the 14th and stime the 15th.
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}

// childNamed returns the pid of a child of this process running the named
// program (envtest's kube-apiserver and etcd), 0 if none.
func childNamed(name string) int {
	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		f := strings.Fields(s[closing+2:])
		if len(f) > 1 && s[open+1:closing] == name && f[1] == strconv.Itoa(self) {
			return pid
		}
	}
	return 0
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

// freePort returns a port nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// testCA writes into dir a serving certificate for 127.0.0.1 and the
// manager's Service name, signed by a CA made for the run, and returns the
// CA's pool for the clients.
func testCA(dir, dnsName string) (*x509.CertPool, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "admissionload test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: dnsName},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{dnsName}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		"tls.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		"tls.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		"ca.crt":  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return nil, err
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, nil
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
