# Certificates of the end-to-end cluster, made with openssl. Sourced, not run.
# ECDSA P-256 keys throughout: quick to generate, accepted by every component.
# shellcheck shell=bash

# new_ca DIR NAME CN: a self-signed CA, DIR/NAME.crt and DIR/NAME.key, kept if present.
new_ca() {
	local dir=$1 name=$2 cn=$3
	[ -s "$dir/$name.crt" ] && [ -s "$dir/$name.key" ] && return 0
	mkdir -p "$dir"
	openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
		-keyout "$dir/$name.key" -out "$dir/$name.crt" -days 3650 -subj "/CN=$cn" \
		-addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,cRLSign,digitalSignature 2>/dev/null
	chmod 600 "$dir/$name.key"
}

# new_cert DIR CA NAME SUBJECT USAGE [SAN]: a certificate signed by DIR/CA,
# written to DIR/NAME.crt and DIR/NAME.key, kept if present. USAGE is
# serverAuth, clientAuth or serverAuth,clientAuth; SAN is an openssl
# subjectAltName value such as "DNS:x,IP:10.0.0.1".
new_cert() {
	local dir=$1 ca=$2 name=$3 subject=$4 usage=$5 san=${6:-} ext
	[ -s "$dir/$name.crt" ] && [ -s "$dir/$name.key" ] && return 0
	ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=$usage"
	[ -n "$san" ] && ext+=$'\n'"subjectAltName=$san"
	openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
		-keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "$subject" 2>/dev/null
	openssl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.crt" -CAkey "$dir/$ca.key" \
		-set_serial "0x$(openssl rand -hex 16)" -days 3650 -out "$dir/$name.crt" \
		-extfile <(echo "$ext") 2>/dev/null
	rm -f "$dir/$name.csr"
	chmod 600 "$dir/$name.key"
}

# new_sa_keypair DIR: the service-account token signing key, sa.key and sa.pub.
new_sa_keypair() {
	local dir=$1
	[ -s "$dir/sa.key" ] && [ -s "$dir/sa.pub" ] && return 0
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/sa.key" 2>/dev/null
	openssl pkey -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
	chmod 600 "$dir/sa.key"
}

# write_kubeconfig FILE USER CERT_BASENAME: a kubeconfig for the cluster with
# the CA and the client certificate embedded, so it works copied anywhere.
write_kubeconfig() {
	local file=$1 user=$2 cert=$3
	cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: inplace-e2e
  cluster:
    server: $APISERVER
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$cert.crt")
    client-key-data: $(base64 -w0 <"$PKI/$cert.key")
contexts:
- name: $user@inplace-e2e
  context:
    cluster: inplace-e2e
    user: $user
current-context: $user@inplace-e2e
EOF
	chmod 600 "$file.tmp"
	mv "$file.tmp" "$file"
}

# cluster_pki makes every certificate, key and kubeconfig of the cluster that
# is not there yet.
cluster_pki() {
	mkdir -p "$PKI"
	new_ca "$PKI" ca inplace-e2e-ca
	new_sa_keypair "$PKI"
	new_cert "$PKI" ca apiserver "/CN=kube-apiserver" serverAuth \
		"IP:$NODE_IP,IP:$KUBERNETES_SVC_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:$NODE_NAME"
	new_cert "$PKI" ca apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
	new_cert "$PKI" ca admin "/O=system:masters/CN=inplace-e2e-admin" clientAuth
	new_cert "$PKI" ca controller-manager "/CN=system:kube-controller-manager" clientAuth
	new_cert "$PKI" ca scheduler "/CN=system:kube-scheduler" clientAuth
	new_cert "$PKI" ca kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
	new_cert "$PKI" ca kubelet-serving "/CN=$NODE_NAME" serverAuth "IP:$NODE_IP,DNS:$NODE_NAME"
	new_cert "$PKI" ca kube-proxy "/CN=system:kube-proxy" clientAuth

	write_kubeconfig "$ADMIN_KUBECONFIG" inplace-e2e-admin admin
	write_kubeconfig "$STATE/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
	write_kubeconfig "$STATE/scheduler.kubeconfig" system:kube-scheduler scheduler
	write_kubeconfig "$STATE/kubelet.kubeconfig" "system:node:$NODE_NAME" kubelet-client
	write_kubeconfig "$STATE/kube-proxy.kubeconfig" system:kube-proxy kube-proxy
}

# node_pki N: the certificates and kubeconfig of node N (2..N; node 1's are
# cluster_pki's): a client certificate of the group system:nodes, named
# system:node:NAME (the Node authorizer and NodeRestriction know it by it),
# and a serving certificate for its IP and name (the API server verifies the
# kubelets' serving certificates), both from the cluster CA.
node_pki() {
	node_vars "$1"
	local dir=$PKI/node$1
	mkdir -p "$dir" "$ND_DIR"
	# new_cert reads the CA from beside the certificate: ../ca is the cluster's.
	new_cert "$dir" ../ca kubelet-client "/O=system:nodes/CN=system:node:$ND_NAME" clientAuth
	new_cert "$dir" ../ca kubelet-serving "/CN=$ND_NAME" serverAuth "IP:$ND_IP,DNS:$ND_NAME"
	write_kubeconfig "$ND_DIR/kubelet.kubeconfig" "system:node:$ND_NAME" "node$1/kubelet-client"
}
