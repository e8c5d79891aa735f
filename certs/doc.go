// Package certs gives the webhook server its serving certificate and says
// whether it is being served: the certificate the manager makes itself
// (ModeBuiltin), cert-manager's (ModeCertManager), or one provided in a
// Secret (ModeSecret).
//
// In every mode the webhook server serves the tls.crt and tls.key of the
// certificate directory, reloaded when they change (Served), the readiness
// check "certificate" passes only while a valid certificate for the
// webhook's Service is served, and the metric
// inplace_webhook_certificate_expiry_seconds is that certificate's NotAfter.
//
//   - ModeBuiltin: open-policy-agent/cert-controller keeps a CA and a serving
//     certificate in the Secret inplace-webhook-cert of the manager's
//     namespace, renews them before they expire, and writes the CA into the
//     two webhook configurations, which it names. Every replica runs it: the
//     Secret is their one source of truth, and a write conditional on its
//     resourceVersion settles which replica's certificate it holds. Every
//     replica writes the Secret's certificate into its certificate
//     directory (an emptyDir), where the webhook server picks it up.
//   - ModeCertManager: cert-manager issues the certificate into the same
//     Secret, mounted as the certificate directory, and its CA injector
//     fills in the webhook configurations. The manager reads the Certificate
//     and is not ready until it is Ready, saying why in its log and in
//     events on the Certificate.
//   - ModeSecret: someone else provides the Secret and the caBundles; the
//     manager only serves what is mounted.
//
// Users' guide: docs/certificates.md; the built-in mode's reasoning:
// docs/design/2026-11-30-built-in-certificate.md.
//
// It must not touch any Secret but the one it is given, nor any webhook
// configuration but the two it names, and only in ModeBuiltin; it never
// writes a cert-manager object. It must not make the manager fail because a
// certificate is missing or late: it waits, says so, and reports not ready.
package certs
