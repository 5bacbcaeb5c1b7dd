# shellcheck shell=bash
# Certificates and kubeconfigs, made with openssl. One cluster CA signs the
# API server's serving certificate, every client certificate and the
# kubelet's serving certificate; a second CA (front-proxy) signs only the
# API server's client certificate for aggregated APIs (metrics-server).

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; chmod 600 "$1"; }

new_ca() { # new_ca NAME CN
  new_key "$PKI_DIR/$1.key"
  openssl req -x509 -new -key "$PKI_DIR/$1.key" -subj "/CN=$2" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI_DIR/$1.crt" 2>/dev/null
}

# issue_cert NAME CA SUBJECT USAGE [SANS]: USAGE is clientAuth, serverAuth or both.
issue_cert() {
  local name="$1" ca="$2" subject="$3" usage="$4" sans="${5:-}" ext
  new_key "$PKI_DIR/$name.key"
  ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=$usage"
  [ -n "$sans" ] && ext+="
subjectAltName=$sans"
  openssl req -new -key "$PKI_DIR/$name.key" -subj "$subject" 2>/dev/null |
    openssl x509 -req -CA "$PKI_DIR/$ca.crt" -CAkey "$PKI_DIR/$ca.key" -set_serial "0x$(openssl rand -hex 12)" \
      -days 3650 -sha256 -extfile <(echo "$ext") -out "$PKI_DIR/$name.crt" 2>/dev/null
}

b64() { base64 -w0 < "$1"; }

write_kubeconfig() { # write_kubeconfig FILE CERTNAME SERVER
  local file="$1" cert="$2" server="$3"
  # Client keys inside: private from the start, without changing the umask
  # of the script (containerd inherits it, and 077 breaks non-root pods).
  ( umask 077; cat > "$file" ) <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: $CLUSTER_NAME
  cluster:
    server: $server
    certificate-authority-data: $(b64 "$PKI_DIR/ca.crt")
users:
- name: $cert
  user:
    client-certificate-data: $(b64 "$PKI_DIR/$cert.crt")
    client-key-data: $(b64 "$PKI_DIR/$cert.key")
contexts:
- name: $CLUSTER_NAME
  context:
    cluster: $CLUSTER_NAME
    user: $cert
current-context: $CLUSTER_NAME
KUBECONFIG
}

# make_pki ADDRESS: every certificate and kubeconfig, for an API server
# reached at https://ADDRESS:APISERVER_PORT.
make_pki() {
  local address="$1" server="https://$1:$APISERVER_PORT"
  mkdir -p "$PKI_DIR" "$CONF_DIR"
  new_ca ca "$CLUSTER_NAME-ca"
  new_ca front-proxy-ca "$CLUSTER_NAME-front-proxy-ca"
  issue_cert apiserver ca "/CN=kube-apiserver" serverAuth \
    "IP:127.0.0.1,IP:$address,IP:$KUBERNETES_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  issue_cert apiserver-kubelet-client ca "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  issue_cert front-proxy-client front-proxy-ca "/CN=front-proxy-client" clientAuth
  issue_cert admin ca "/O=system:masters/CN=modelship-admin" clientAuth
  issue_cert controller-manager ca "/CN=system:kube-controller-manager" clientAuth
  issue_cert scheduler ca "/CN=system:kube-scheduler" clientAuth
  issue_cert kubelet ca "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
  issue_cert kubelet-serving ca "/CN=$NODE_NAME" serverAuth "IP:$BRIDGE_IP,IP:127.0.0.1,DNS:$NODE_NAME"
  issue_cert kube-proxy ca "/CN=system:kube-proxy" clientAuth
  issue_cert metrics-server ca "/CN=system:metrics-server" clientAuth
  # Service-account token signing key.
  new_key "$PKI_DIR/sa.key"
  openssl pkey -in "$PKI_DIR/sa.key" -pubout -out "$PKI_DIR/sa.pub" 2>/dev/null

  write_kubeconfig "$KUBECONFIG_FILE" admin "$server"
  local c
  for c in controller-manager scheduler kubelet kube-proxy metrics-server; do
    write_kubeconfig "$CONF_DIR/$c.kubeconfig" "$c" "$server"
  done
}
