// Package inplace holds the domain rules of in-place updates: the names of
// DESIGN.md, which namespaces and workloads are managed, image reference
// normalisation, and whether a pod template change can be applied to live pods.
//
// Everything here is a pure function over k8s.io/api types. The package must
// not perform I/O or hold a client: the webhook, the controllers and the tests
// share it, and tables and fuzzers cover it completely.
package inplace
