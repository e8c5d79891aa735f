// Command mkimage assembles a single-layer container image from local files
// (typically one static Go binary) and writes it as a docker-archive tarball
// that `ctr images import` and `docker load` accept. No registry, no daemon.
//
// The output is reproducible: fixed timestamps and owners, so the same inputs
// give the same image digest, and several tags given together share one digest.
//
//	mkimage -o app.tar -tag example.local/app:v1 -tag example.local/app:v1-retag \
//	    -file .cache/images/bin/app:/app -entrypoint /app -user 65532:65532
//
// It prints one line per tag: the reference and the image ID (the digest of
// the image config), which is what the kubelet reports as a container's
// imageID for an imported image. (The manifest digest is not printed:
// containerd writes its own manifest when it imports a docker archive.)
package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// epoch is the timestamp of every file and of the image itself.
var epoch = time.Unix(0, 0).UTC()

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type options struct {
	out        string
	tags       listFlag
	files      listFlag
	entrypoint listFlag
	cmd        listFlag
	env        listFlag
	ports      listFlag
	user       string
	workdir    string
	arch       string
}

func main() {
	var o options
	flag.StringVar(&o.out, "o", "", "output docker-archive tarball (required)")
	flag.Var(&o.tags, "tag", "image reference to tag the image with (repeatable, at least one)")
	flag.Var(&o.files, "file", "SRC:DEST, a local file and its absolute path in the image, mode kept (repeatable)")
	flag.Var(&o.entrypoint, "entrypoint", "entrypoint word (repeatable, in order)")
	flag.Var(&o.cmd, "cmd", "cmd word (repeatable, in order)")
	flag.Var(&o.env, "env", "KEY=VALUE environment entry (repeatable)")
	flag.Var(&o.ports, "port", "exposed TCP port (repeatable)")
	flag.StringVar(&o.user, "user", "", "UID:GID the image runs as; a numeric non-root user also gets /etc/passwd and /etc/group entries")
	flag.StringVar(&o.workdir, "workdir", "/", "working directory")
	flag.StringVar(&o.arch, "arch", runtime.GOARCH, "image architecture")
	flag.Parse()

	if err := run(o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(o options, stdout io.Writer) error {
	if o.out == "" || len(o.tags) == 0 || len(o.files) == 0 {
		return errors.New("-o, -tag and -file are required")
	}
	refs := make([]name.Reference, 0, len(o.tags))
	for _, t := range o.tags {
		ref, err := name.NewTag(t, name.StrictValidation)
		if err != nil {
			return fmt.Errorf("tag %q: %w", t, err)
		}
		refs = append(refs, ref)
	}

	layerTar, err := buildLayer(o.files, o.user)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = o.arch
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = o.entrypoint
	cf.Config.Cmd = o.cmd
	cf.Config.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, o.env...)
	cf.Config.User = o.user
	cf.Config.WorkingDir = o.workdir
	if len(o.ports) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range o.ports {
			cf.Config.ExposedPorts[p+"/tcp"] = struct{}{}
		}
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}

	images := make(map[name.Reference]v1.Image, len(refs))
	for _, ref := range refs {
		images[ref] = img
	}
	var archive bytes.Buffer
	if err := tarball.MultiRefWrite(images, &archive); err != nil {
		return fmt.Errorf("write %s: %w", o.out, err)
	}
	sorted, err := sortRepoTags(archive.Bytes())
	if err != nil {
		return err
	}
	tmp := o.out + ".tmp"
	if err := os.WriteFile(tmp, sorted, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, o.out); err != nil {
		return err
	}

	id, err := img.ConfigName()
	if err != nil {
		return err
	}
	for _, ref := range refs {
		fmt.Fprintf(stdout, "%s %s\n", ref.Name(), id)
	}
	return nil
}

// sortRepoTags rewrites a docker archive with the tags of each image in
// manifest.json sorted: go-containerregistry lists them in map order, which
// would make the same image give different tarballs.
func sortRepoTags(archive []byte) ([]byte, error) {
	var out bytes.Buffer
	tr := tar.NewReader(bytes.NewReader(archive))
	tw := tar.NewWriter(&out)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read archive: %w", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		if hdr.Name == "manifest.json" {
			var m tarball.Manifest
			if err := json.Unmarshal(data, &m); err != nil {
				return nil, fmt.Errorf("manifest.json: %w", err)
			}
			for i := range m {
				sort.Strings(m[i].RepoTags)
			}
			if data, err = json.Marshal(m); err != nil {
				return nil, err
			}
			hdr.Size = int64(len(data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// buildLayer returns an uncompressed tar of the given files, their parent
// directories, /tmp, and, for a numeric non-root user, /etc/passwd and
// /etc/group naming it, all owned by root and stamped with epoch.
func buildLayer(files []string, user string) ([]byte, error) {
	type entry struct {
		hdr  *tar.Header
		data []byte
	}
	entries := map[string]entry{}
	addDir := func(dir string, mode int64) {
		for d := dir; d != "/" && d != "."; d = path.Dir(d) {
			if _, ok := entries[d]; !ok {
				entries[d] = entry{hdr: &tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755}}
			}
		}
		if mode != 0 {
			entries[dir].hdr.Mode = mode
		}
	}
	addFile := func(dest string, data []byte, mode int64) {
		addDir(path.Dir(dest), 0)
		entries[dest] = entry{
			hdr:  &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(dest, "/"), Mode: mode, Size: int64(len(data))},
			data: data,
		}
	}

	for _, f := range files {
		src, dest, ok := strings.Cut(f, ":")
		if !ok || !path.IsAbs(dest) {
			return nil, fmt.Errorf("-file %q: want SRC:/ABS/DEST", f)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		st, err := os.Stat(src)
		if err != nil {
			return nil, err
		}
		addFile(path.Clean(dest), data, int64(st.Mode().Perm()))
	}
	addDir("/tmp", 0o1777)
	if uid, gid, ok := numericUser(user); ok && uid != 0 {
		addFile("/etc/passwd", fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", uid, gid), 0o644)
		addFile("/etc/group", fmt.Appendf(nil, "root:x:0:\nnonroot:x:%d:\n", gid), 0o644)
	}

	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := entries[n]
		e.hdr.ModTime = epoch
		e.hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(e.hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// numericUser parses "UID" or "UID:GID".
func numericUser(user string) (uid, gid int, ok bool) {
	if user == "" {
		return 0, 0, false
	}
	u, g, hasGroup := strings.Cut(user, ":")
	uid, err := strconv.Atoi(u)
	if err != nil {
		return 0, 0, false
	}
	gid = uid
	if hasGroup {
		if gid, err = strconv.Atoi(g); err != nil {
			return 0, 0, false
		}
	}
	return uid, gid, true
}
