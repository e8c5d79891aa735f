// Command registry is the container registry of the end-to-end cluster, and
// the client that fills it. The registry speaks the distribution API
// (go-containerregistry's implementation: blobs on disk, manifests in
// memory) over HTTPS only, optionally behind basic auth; push turns an image
// tarball of mkimage into the image a user pulls in production: its layer
// on top of a base of shared layers, plus a version layer of its own, each
// of incompressible bytes of a given size.
//
//	registry serve -listen 10.250.0.250:5000 -cert registry.crt -key registry.key -dir blobs [-auth user:password [-auth-prefix private/]]
//	registry push -ca ca.crt -tarball testapp-v1.tar -tag example.local/inplace-testapp:v1 \
//	    -to 10.250.0.250:5000/inplace-testapp:v1 -base-mb 40 -version-mb 30 [-auth user:password]
//
// push prints the reference it wrote and the image's manifest digest, which
// is what the kubelet reports as the imageID of a container that pulled it.
// The same -tarball, -tag, sizes and -to give the same digest: the bytes of
// a layer are drawn from a generator seeded by its name.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const usage = `usage:
  registry serve -listen ADDR -cert FILE -key FILE -dir DIR [-auth USER:PASSWORD [-auth-prefix PREFIX]]
  registry push -ca FILE -tarball FILE -tag REF -to REF [-base-mb N] [-version-mb N] [-auth USER:PASSWORD]`

func main() {
	log.SetFlags(0)
	log.SetPrefix("registry: ")
	if len(os.Args) < 2 {
		log.Fatal(usage)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "push":
		err = push(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q\n%s", os.Args[1], usage)
	}
	if err != nil {
		log.Fatal(err)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", "", "address to listen on, host:port")
	cert := fs.String("cert", "", "the server's certificate (PEM)")
	key := fs.String("key", "", "the server's key (PEM)")
	dir := fs.String("dir", "", "the folder of the blobs")
	auth := fs.String("auth", "", "user:password that every request must carry (basic auth); none if empty")
	authPrefix := fs.String("auth-prefix", "", "with -auth, only the repositories under this prefix (private/: /v2/private/...) need it; every request when empty")
	_ = fs.Parse(args)
	switch {
	case *listen == "":
		return errors.New("-listen: required")
	case *cert == "" || *key == "":
		return errors.New("-cert and -key: required (the registry serves HTTPS only)")
	case *dir == "":
		return errors.New("-dir: required")
	case *auth != "" && !strings.Contains(*auth, ":"):
		return errors.New("-auth: want user:password")
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	var h http.Handler = registry.New(
		registry.WithBlobHandler(registry.NewDiskBlobHandler(*dir)),
		registry.Logger(log.New(io.Discard, "", 0)),
	)
	if *auth != "" {
		h = basicAuth(h, *auth, *authPrefix)
	}
	srv := &http.Server{
		Addr:              *listen,
		Handler:           logRequests(h),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12},
		// HTTP/1.1 only: the registry reads an upload's body under its
		// lock, and over one HTTP/2 connection two concurrent uploads
		// deadlock on the connection's flow-control window (the client's
		// layers go up in parallel).
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Printf("serving on https://%s, blobs in %s, auth %t (prefix %q)", *listen, *dir, *auth != "", *authPrefix)
	if err := srv.ListenAndServeTLS(*cert, *key); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// basicAuth refuses every request without the user and password (to the
// repositories under prefix, when set), as a registry that serves private
// images does (the challenge is what containerd answers with the pod's pull
// secret).
func basicAuth(next http.Handler, userPassword, prefix string) http.Handler {
	want := sha256.Sum256([]byte(userPassword))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The API's root (/v2/) challenges too: a client that pings it
		// first (go-containerregistry) learns to send the credentials.
		if prefix != "" && r.URL.Path != "/v2/" && !strings.HasPrefix(r.URL.Path, "/v2/"+prefix) {
			next.ServeHTTP(w, r)
			return
		}
		user, password, ok := r.BasicAuth()
		got := sha256.Sum256([]byte(user + ":" + password))
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="inplace-e2e"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// logRequests logs the blob and manifest reads: what was pulled, by whom,
// how many bytes, how long it took.
func logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		cw := &countingWriter{ResponseWriter: w}
		next.ServeHTTP(cw, r)
		if r.Method == http.MethodGet && (strings.Contains(r.URL.Path, "/blobs/") || strings.Contains(r.URL.Path, "/manifests/")) {
			log.Printf("%s %s %s: %d, %d bytes in %v", r.RemoteAddr, r.Method, r.URL.Path, cw.status(), cw.n, time.Since(start).Round(time.Millisecond))
		}
	})
}

type countingWriter struct {
	http.ResponseWriter
	n    int64
	code int
}

func (w *countingWriter) WriteHeader(code int) { w.code = code; w.ResponseWriter.WriteHeader(code) }
func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}
func (w *countingWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

func push(args []string) error {
	fs := flag.NewFlagSet("push", flag.ExitOnError)
	ca := fs.String("ca", "", "the CA that signed the registry's certificate (PEM)")
	tarPath := fs.String("tarball", "", "the image tarball (docker archive, as mkimage writes)")
	tag := fs.String("tag", "", "the reference of the image in the tarball")
	to := fs.String("to", "", "the reference to push to")
	baseMB := fs.Int("base-mb", 0, "MiB of the base layer, the same for every image of the registry")
	versionMB := fs.Int("version-mb", 0, "MiB of the image's own version layer (drawn from -to)")
	auth := fs.String("auth", "", "user:password for the registry; none if empty")
	_ = fs.Parse(args)
	switch {
	case *ca == "" || *tarPath == "" || *tag == "" || *to == "":
		return errors.New("-ca, -tarball, -tag and -to: required")
	case *baseMB < 0 || *versionMB < 0:
		return errors.New("-base-mb and -version-mb: want 0 or more")
	case *auth != "" && !strings.Contains(*auth, ":"):
		return errors.New("-auth: want user:password")
	}
	src, err := name.NewTag(*tag)
	if err != nil {
		return fmt.Errorf("-tag: %w", err)
	}
	dst, err := name.ParseReference(*to)
	if err != nil {
		return fmt.Errorf("-to: %w", err)
	}
	img, err := tarball.ImageFromPath(*tarPath, &src)
	if err != nil {
		return fmt.Errorf("reading %s: %w", *tarPath, err)
	}
	// The base goes under the image's own layer, as a distribution's base
	// image would; the version layer on top.
	var layers []v1.Layer
	if *baseMB > 0 {
		l, err := noiseLayer("base", *baseMB)
		if err != nil {
			return err
		}
		layers = append(layers, l)
	}
	own, err := img.Layers()
	if err != nil {
		return err
	}
	layers = append(layers, own...)
	if *versionMB > 0 {
		l, err := noiseLayer("version of "+dst.String(), *versionMB)
		if err != nil {
			return err
		}
		layers = append(layers, l)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.RootFS.DiffIDs = nil
	cfg.History = nil
	out, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return err
	}
	if out, err = mutate.AppendLayers(out, layers...); err != nil {
		return err
	}
	pool, err := certPool(*ca)
	if err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	opts := []remote.Option{remote.WithTransport(tr)}
	if user, password, ok := strings.Cut(*auth, ":"); ok {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: user, Password: password}))
	}
	if err := remote.Write(dst, out, opts...); err != nil {
		return fmt.Errorf("pushing %s: %w", dst, err)
	}
	digest, err := out.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s %s\n", dst, digest)
	return nil
}

// noiseLayer is a layer of one file of mb MiB of bytes drawn from a
// generator seeded by seed: incompressible, as a layer of binaries and
// assets mostly is, and the same for the same seed.
func noiseLayer(seed string, mb int) (v1.Layer, error) {
	sum := sha256.Sum256([]byte(seed))
	name := fmt.Sprintf("inplace-e2e/%x", sum[:8])
	size := int64(mb) << 20
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		hdr := &tar.Header{Name: name, Mode: 0o444, Size: size, ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := io.CopyN(tw, rand.NewChaCha8(sum), size); err != nil {
			return nil, err
		}
		if err := tw.Close(); err != nil {
			return nil, err
		}
		return io.NopCloser(&buf), nil
	}, tarball.WithCompressionLevel(gzip.BestSpeed))
}

func certPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("-ca: no certificate in %s", path)
	}
	return pool, nil
}
