package certs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The layout writeFiles keeps in the certificate directory, the one the
// kubelet gives a Secret volume: tls.crt and tls.key are links into ..data,
// itself a link to the directory of the current pair.
const (
	dataLink   = "..data"
	pairPrefix = "..pair-"
)

// writeFiles puts cert and key into dir as tls.crt and tls.key, both at
// once: the pair goes into a new directory, and one rename points ..data at
// it. A reader (the certwatcher) never sees a new certificate with an old
// key. It reports whether anything changed: not when dir already holds this
// pair.
func writeFiles(dir string, cert, key []byte) (bool, error) {
	if same(dir, certFile, cert) && same(dir, keyFile, key) {
		return false, nil
	}
	pair, err := os.MkdirTemp(dir, pairPrefix)
	if err != nil {
		return false, err
	}
	if err := os.WriteFile(filepath.Join(pair, certFile), cert, 0o644); err != nil {
		return false, err
	}
	if err := os.WriteFile(filepath.Join(pair, keyFile), key, 0o600); err != nil {
		return false, err
	}
	if err := replaceLink(dir, dataLink, filepath.Base(pair)); err != nil {
		return false, err
	}
	for _, name := range []string{certFile, keyFile} {
		target := filepath.Join(dataLink, name)
		if current, err := os.Readlink(filepath.Join(dir, name)); err == nil && current == target {
			continue
		}
		if err := replaceLink(dir, name, target); err != nil {
			return false, err
		}
	}
	// The previous pairs: removing them is what makes the certwatcher's
	// watches fire (they follow the links to the files).
	entries, err := os.ReadDir(dir)
	if err != nil {
		return true, err
	}
	var errs []error
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), pairPrefix) && e.Name() != filepath.Base(pair) {
			errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
		}
	}
	return true, errors.Join(errs...)
}

// replaceLink makes dir/name a symbolic link to target, in one rename.
func replaceLink(dir, name, target string) error {
	tmp := filepath.Join(dir, name+".tmp")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("replacing %s: %w", name, err)
	}
	return nil
}

func same(dir, name string, want []byte) bool {
	got, err := os.ReadFile(filepath.Join(dir, name))
	return err == nil && bytes.Equal(got, want)
}
