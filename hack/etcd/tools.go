//go:build tools

// Package etcd pins the etcd server the tests run (envtest and the e2e
// cluster). etcd's own modules carry replace lines that `go install` refuses,
// so it is built from this scratch module.
package etcd

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
