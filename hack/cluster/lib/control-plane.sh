# shellcheck shell=bash
# etcd, kube-apiserver, kube-controller-manager (both modes) and
# kube-scheduler (full mode). Everything listens on 127.0.0.1, except the
# API server in full mode, which listens on the bridge address so that pods
# reach it through the kubernetes Service.

start_etcd() {
  start_proc etcd "$BIN/etcd" --name=default --data-dir="$STATE_DIR/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="default=http://127.0.0.1:$ETCD_PEER_PORT" \
    --listen-metrics-urls="http://127.0.0.1:$ETCD_METRICS_PORT" \
    --unsafe-no-fsync=true --snapshot-count=10000 --quota-backend-bytes=2147483648 \
    --log-level=warn
  wait_for "etcd health" 30 etcd curl -sf "http://127.0.0.1:$ETCD_CLIENT_PORT/health"
}

# start_apiserver ADDRESS: listen and advertise on ADDRESS.
start_apiserver() {
  local address="$1" reconciler=lease
  # The kubernetes Service cannot point at a loopback address; with no pods
  # (control-plane mode) nobody needs its endpoints.
  [ "$MODE" = control-plane ] && reconciler=none
  local -a audit
  mapfile -t audit < <(audit_flags)
  start_proc kube-apiserver "$BIN/kube-apiserver" \
    --bind-address="$address" --advertise-address="$address" --secure-port="$APISERVER_PORT" \
    --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --endpoint-reconciler-type="$reconciler" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --client-ca-file="$PKI_DIR/ca.crt" \
    --tls-cert-file="$PKI_DIR/apiserver.crt" --tls-private-key-file="$PKI_DIR/apiserver.key" \
    --kubelet-client-certificate="$PKI_DIR/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI_DIR/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI_DIR/ca.crt" \
    --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI_DIR/sa.pub" \
    --service-account-signing-key-file="$PKI_DIR/sa.key" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true \
    --requestheader-client-ca-file="$PKI_DIR/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI_DIR/front-proxy-client.crt" \
    --proxy-client-key-file="$PKI_DIR/front-proxy-client.key" \
    --enable-aggregator-routing=true \
    "${audit[@]}" \
    --profiling=false --v=1
  wait_for "kube-apiserver readiness" 90 kube-apiserver \
    curl -sf --cacert "$PKI_DIR/ca.crt" "https://$address:$APISERVER_PORT/readyz"
}

start_controller_manager() {
  local kc="$CONF_DIR/controller-manager.kubeconfig"
  start_proc kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
    --controllers='*' --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI_DIR/sa.key" \
    --root-ca-file="$PKI_DIR/ca.crt" \
    --cluster-signing-cert-file="$PKI_DIR/ca.crt" --cluster-signing-key-file="$PKI_DIR/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --allocate-node-cidrs=false \
    --horizontal-pod-autoscaler-sync-period=5s \
    --horizontal-pod-autoscaler-cpu-initialization-period=30s \
    --horizontal-pod-autoscaler-initial-readiness-delay=5s \
    --profiling=false --v=1
  wait_for "kube-controller-manager health" 60 kube-controller-manager \
    curl -sfk "https://127.0.0.1:$KCM_PORT/healthz"
}

start_scheduler() {
  local kc="$CONF_DIR/scheduler.kubeconfig"
  start_proc kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --leader-elect=false \
    --profiling=false --v=1
  wait_for "kube-scheduler health" 60 kube-scheduler \
    curl -sfk "https://127.0.0.1:$SCHEDULER_PORT/healthz"
}

kctl() { "$BIN/kubectl" --kubeconfig="$KUBECONFIG_FILE" "$@"; }

# wait_for_default_serviceaccount: pods cannot be created in a namespace
# before its default ServiceAccount exists.
wait_for_default_serviceaccount() {
  wait_for "the default ServiceAccount" 60 kube-controller-manager kctl -n default get serviceaccount default
}
