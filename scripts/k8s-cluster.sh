#!/usr/bin/env bash
# A real single-node Kubernetes cluster for the platform test, run as plain processes (PID 1
# need not be systemd): etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# containerd, kubelet and kube-proxy, plus CoreDNS as the cluster's DNS. The Kubernetes
# binaries come from scripts/k8s-binaries.sh (built once from the Go module, cached by
# version); etcd, containerd, runc, the CNI plugins, iptables and conntrack are Debian's
# (installed with apt-get when missing, as root).
#
#   scripts/k8s-cluster.sh up            start (idempotent), wait until the node and DNS are Ready
#   scripts/k8s-cluster.sh down          stop every process it started, unmount, remove the state
#   scripts/k8s-cluster.sh status        exit 0 when the API server answers
#   scripts/k8s-cluster.sh env           print KUBECONFIG=... and KUBECTL=... for the caller
#   scripts/k8s-cluster.sh load IMAGE..  docker save IMAGE | ctr -n k8s.io images import -
#                                        (skipped when containerd already holds that image id)
#
# Everything lives under $LEDGERLINE_K8S_STATE (default .local/k8s in the clone): certificates
# and kubeconfigs (generated with openssl on every `up`), etcd's data, containerd's root (kept
# across runs so imported images stay warm), kubelet's root, logs and pid files.
#
# Network: pods get addresses from the bridge CNI plugin on the bridge "llk8s0" (10.244.0.0/24,
# gateway 10.244.0.1, the node's address), Services are 10.96.0.0/16 and kube-proxy (iptables
# mode) implements them, also for connections from the host: a route sends the Service range
# to the bridge. Pods cannot reach beyond the bridge (a FORWARD rule rejects it, and there is no
# masquerading); containerd pulls go to a dead loopback proxy, so a missing image fails instead
# of reaching a registry. Every port is outside the kernel's ephemeral range (32768-60999).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${LEDGERLINE_K8S_STATE:-$ROOT/.local/k8s}"
NODE="${LEDGERLINE_K8S_NODE:-ledgerline-node}"
BRIDGE="llk8s0"
POD_CIDR="10.244.0.0/24"
CLUSTER_CIDR="10.244.0.0/16"
NODE_IP="10.244.0.1"
SERVICE_CIDR="10.96.0.0/16"
API_SERVICE_IP="10.96.0.1"
DNS_IP="10.96.0.10"
API_PORT="${LEDGERLINE_K8S_API_PORT:-26443}"
ETCD_PORT="${LEDGERLINE_K8S_ETCD_PORT:-22379}"
ETCD_PEER_PORT=$((ETCD_PORT + 1))
KUBELET_PORT=20250
KUBELET_HEALTHZ_PORT=20248
PROXY_HEALTHZ_PORT=20256
PROXY_METRICS_PORT=20249
CM_PORT=20257
SCHED_PORT=20259
CRI_STREAM_PORT=20251
DEAD_PROXY="http://127.0.0.1:9"

PKI="$STATE/pki"
LOGS="$STATE/logs"
RUN="$STATE/run"
CTRD_SOCK="$STATE/containerd/containerd.sock"
KUBECONFIG_ADMIN="$STATE/admin.kubeconfig"

log() { printf '[k8s-cluster] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

bin_dir() { bash "$ROOT/scripts/k8s-binaries.sh"; }

ensure_packages() {
  local need=()
  command -v etcd >/dev/null || need+=(etcd-server)
  command -v containerd >/dev/null || need+=(containerd)
  command -v runc >/dev/null || need+=(runc)
  [[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
  command -v iptables >/dev/null || need+=(iptables)
  command -v conntrack >/dev/null || need+=(conntrack)
  command -v openssl >/dev/null || need+=(openssl)
  if ((${#need[@]})); then
    [[ $EUID -eq 0 ]] || die "missing ${need[*]} and not root"
    log "apt-get install ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${need[@]}" >&2
  fi
}

# --- processes --------------------------------------------------------------------------------

running() { [[ -f "$RUN/$1.pid" ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

start() {  # start NAME COMMAND...: in its own session, log in $LOGS/NAME.log, pid in $RUN/NAME.pid
  local name="$1"; shift
  running "$name" && return
  local proxy=(env -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy -u NO_PROXY -u no_proxy)
  # containerd is the only component that would pull: to a dead loopback proxy, never a registry.
  [[ "$name" == containerd ]] && proxy+=(HTTP_PROXY="$DEAD_PROXY" HTTPS_PROXY="$DEAD_PROXY")
  "${proxy[@]}" setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

stop() {  # stop NAME: SIGTERM, then SIGKILL after 15 s
  local name="$1" pid
  [[ -f "$RUN/$name.pid" ]] || return 0
  pid="$(cat "$RUN/$name.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/$name.pid"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds="$1" what="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${seconds}s waiting for $what"
      return 1
    fi
    sleep 1
  done
}

# --- certificates and kubeconfigs -------------------------------------------------------------

cert() {  # cert NAME SUBJECT [SAN]: a key and a certificate signed by the cluster CA
  local name="$1" subject="$2" san="${3:-}" ext="$PKI/$1.ext"
  openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subject" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [[ -n "$san" ]]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$san"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 30 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
}

kubeconfig() {  # kubeconfig NAME CERT: a kubeconfig for the client certificate CERT
  local file="$STATE/$1.kubeconfig" certname="$2"
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: ledgerline
    cluster:
      server: https://$NODE_IP:$API_PORT
      certificate-authority: $PKI/ca.crt
users:
  - name: $1
    user:
      client-certificate: $PKI/$certname.crt
      client-key: $PKI/$certname.key
contexts:
  - name: ledgerline
    context: {cluster: ledgerline, user: $1}
current-context: ledgerline
EOF
  chmod 600 "$file"
}

make_pki() {
  rm -rf "$PKI" && mkdir -p "$PKI" && chmod 700 "$PKI"
  openssl genrsa -out "$PKI/ca.key" 2048 2>/dev/null
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=ledgerline-test-ca" -days 30 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$PKI/ca.crt" 2>/dev/null
  cert apiserver "/CN=kube-apiserver" \
    "IP:$NODE_IP,IP:127.0.0.1,IP:$API_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  cert admin "/O=system:masters/CN=ledgerline-admin"
  cert controller-manager "/CN=system:kube-controller-manager"
  cert scheduler "/CN=system:kube-scheduler"
  cert kubelet "/O=system:nodes/CN=system:node:$NODE"
  cert kubelet-serving "/O=system:nodes/CN=system:node:$NODE" "IP:$NODE_IP,DNS:$NODE"
  cert kube-proxy "/CN=system:kube-proxy"
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  kubeconfig admin admin
  kubeconfig controller-manager controller-manager
  kubeconfig scheduler scheduler
  kubeconfig kubelet kubelet
  kubeconfig kube-proxy kube-proxy
}

# --- network ----------------------------------------------------------------------------------

network_up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr show dev "$BRIDGE" | grep -q "inet $NODE_IP/" || ip addr add "$NODE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Connections from the host to a Service leave through the bridge (kube-proxy DNATs them).
  ip route replace "$SERVICE_CIDR" dev "$BRIDGE" src "$NODE_IP"
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
  # Pods reach the bridge only: nothing they send is forwarded to another interface; between
  # pods on the bridge (bridged frames pass iptables with br_netfilter) everything is allowed.
  iptables -C FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j REJECT -m comment --comment ledgerline-k8s 2>/dev/null \
    || iptables -I FORWARD 1 -i "$BRIDGE" ! -o "$BRIDGE" -j REJECT -m comment --comment ledgerline-k8s
  iptables -C FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT -m comment --comment ledgerline-k8s 2>/dev/null \
    || iptables -I FORWARD 1 -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT -m comment --comment ledgerline-k8s
  mkdir -p "$STATE/cni/net.d" "$STATE/cni/ipam"
  cat >"$STATE/cni/net.d/10-ledgerline.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "ledgerline",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "$SERVICE_CIDR", "gw": "$NODE_IP"}],
        "dataDir": "$STATE/cni/ipam"
      }
    }
  ]
}
EOF
}

network_down() {
  while iptables -D FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j REJECT -m comment --comment ledgerline-k8s 2>/dev/null; do :; done
  while iptables -D FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT -m comment --comment ledgerline-k8s 2>/dev/null; do :; done
  # kube-proxy removes its own chains with --cleanup.
  local bin
  bin="$(bin_dir 2>/dev/null)" && "$bin/kube-proxy" --cleanup >/dev/null 2>&1 || true
  # The kubelet's empty canary chains.
  local table
  for table in nat filter mangle; do
    iptables -t "$table" -X KUBE-KUBELET-CANARY 2>/dev/null || true
    ip6tables -t "$table" -X KUBE-KUBELET-CANARY 2>/dev/null || true
  done
  ip route del "$SERVICE_CIDR" dev "$BRIDGE" 2>/dev/null || true
  ip link del "$BRIDGE" 2>/dev/null || true
}

# --- components -------------------------------------------------------------------------------

containerd_up() {
  local pause_image="$1"
  mkdir -p "$STATE/containerd/root" "$STATE/containerd/state" "$STATE/containerd/opt"
  cat >"$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$CTRD_SOCK"
[ttrpc]
  address = "$CTRD_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_image"
  # The sandbox this runs in lacks CAP_SYS_RESOURCE: never lower a process's oom_score_adj.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "$CRI_STREAM_PORT"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
EOF
  start containerd containerd --config "$STATE/containerd/config.toml"
  wait_for 60 containerd ctr --address "$CTRD_SOCK" version
}

etcd_up() {
  mkdir -p "$STATE/etcd" && chmod 700 "$STATE/etcd"
  start etcd etcd --name ledgerline --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "ledgerline=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
    --quota-backend-bytes 2147483648 --snapshot-count 10000
  wait_for 60 etcd curl -fsS "http://127.0.0.1:$ETCD_PORT/health"
}

control_plane_up() {
  local bin="$1"
  start kube-apiserver "$bin/kube-apiserver" \
    --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port="$API_PORT" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" \
    --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --anonymous-auth=false --profiling=false --allow-privileged=false \
    --service-node-port-range=30000-32767
  wait_for 180 kube-apiserver kctl get --raw /readyz \
    || { tail -n 30 "$LOGS/kube-apiserver.log" >&2; exit 1; }

  start kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$CM_PORT" \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --use-service-account-credentials=true --leader-elect=false \
    --service-cluster-ip-range="$SERVICE_CIDR" --cluster-cidr="$CLUSTER_CIDR" \
    --controllers='*,-nodeipam' --profiling=false
  start kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig="$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" --leader-elect=false --profiling=false
}

node_up() {
  local bin="$1"
  mkdir -p "$STATE/kubelet" "$STATE/kubelet-plugins"
  : >"$STATE/resolv.conf"  # pods with dnsPolicy Default (CoreDNS) get no upstream server
  cat >"$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$CTRD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDomain: cluster.local
clusterDNS: [$DNS_IP]
resolvConf: $STATE/resolv.conf
volumePluginDir: $STATE/kubelet-plugins
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "200Mi", nodefs.available: "2%", imagefs.available: "2%"}
serializeImagePulls: false
maxPods: 60
podPidsLimit: 4096
EOF
  start kubelet "$bin/kubelet" --config="$STATE/kubelet.yaml" --kubeconfig="$STATE/kubelet.kubeconfig" \
    --root-dir="$STATE/kubelet" --hostname-override="$NODE" --node-ip="$NODE_IP" --v=1
  cat >"$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
mode: iptables
hostnameOverride: $NODE
clusterCIDR: $CLUSTER_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
nodePortAddresses: ["$NODE_IP/32"]
conntrack: {maxPerCore: 0}
iptables: {localhostNodePorts: false, masqueradeAll: true}
EOF
  start kube-proxy "$bin/kube-proxy" --config="$STATE/kube-proxy.yaml"
}

kctl() { env -u HTTPS_PROXY -u https_proxy "$(bin_dir)/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

node_ready() {
  [[ "$(kctl get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

# --- images -----------------------------------------------------------------------------------

ctr_k8s() { ctr --address "$CTRD_SOCK" -n k8s.io "$@"; }

normalized() {  # the name containerd (and the kubelet) use for a Docker-style image reference
  local ref="$1" first="${1%%/*}"
  if [[ "$ref" != */* ]]; then ref="docker.io/library/$ref"
  elif [[ "$first" != *.* && "$first" != *:* && "$first" != localhost ]]; then ref="docker.io/$ref"
  fi
  echo "$ref"
}

load_image() {  # docker save IMAGE | ctr import, unless containerd holds this image id already
  local image="$1" id ref marker
  id="$(docker image inspect -f '{{.Id}}' "$image")" || die "no Docker image $image"
  ref="$(normalized "$image")"
  marker="$STATE/containerd/loaded/$(echo "$ref" | tr '/:' '__')"
  if [[ "$(cat "$marker" 2>/dev/null)" == "$id" ]] && ctr_k8s images ls -q "name==$ref" 2>/dev/null | grep -qxF "$ref"; then
    return 0
  fi
  log "loading $image into containerd"
  docker save "$image" | ctr_k8s images import - >/dev/null
  mkdir -p "$STATE/containerd/loaded"
  echo "$id" >"$marker"
}

local_image() {  # local_image TAG BINARY ENTRYPOINT...: a one-binary image made with docker import
  local tag="$1" binary="$2"; shift 2
  docker image inspect "$tag" >/dev/null 2>&1 && return
  local dir entry
  dir="$(mktemp -d)"
  mkdir -p "$dir/rootfs/etc"
  cp "$binary" "$dir/rootfs/"
  echo 'nobody:x:65534:65534:nobody:/:/sbin/nologin' >"$dir/rootfs/etc/passwd"
  entry="$(printf '"%s",' "$@")"
  tar -C "$dir/rootfs" -cf "$dir/rootfs.tar" .
  docker import --change "ENTRYPOINT [${entry%,}]" --change 'USER 65534:65534' "$dir/rootfs.tar" "$tag" >/dev/null
  rm -rf "$dir"
}

# --- cluster add-ons: CoreDNS and hostPath PersistentVolumes ------------------------------------

addons_up() {
  local coredns_image="$1"
  kctl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:1053 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        cache 30
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      priorityClassName: system-cluster-critical
      securityContext: {runAsNonRoot: true, runAsUser: 65534, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: coredns
          image: $coredns_image
          imagePullPolicy: Never
          args: ["-conf", "/etc/coredns/Corefile"]
          ports:
            - {name: dns, containerPort: 1053, protocol: UDP}
            - {name: dns-tcp, containerPort: 1053, protocol: TCP}
          readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 2}
          livenessProbe: {httpGet: {path: /health, port: 8080}, periodSeconds: 10}
          resources: {requests: {cpu: 20m, memory: 32Mi}, limits: {memory: 128Mi}}
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
          volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $DNS_IP
  selector: {k8s-app: kube-dns}
  ports:
    - {name: dns, port: 53, targetPort: 1053, protocol: UDP}
    - {name: dns-tcp, port: 53, targetPort: 1053, protocol: TCP}
EOF
  # Statically provisioned volumes for StatefulSets' claims: there is no dynamic provisioner
  # here, and a claim without a storage class binds to one of these (directories in the state).
  local i
  for i in 1 2 3 4 5 6; do
    mkdir -p "$STATE/volumes/pv$i" && chmod 0777 "$STATE/volumes/pv$i"
    kctl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolume
metadata: {name: ledgerline-local-pv$i, labels: {ledgerline.io/test-volume: "true"}}
spec:
  capacity: {storage: 20Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  hostPath: {path: $STATE/volumes/pv$i, type: Directory}
EOF
  done
}

dns_ready() {
  [[ "$(kctl -n kube-system get deploy coredns -o 'jsonpath={.status.readyReplicas}' 2>/dev/null)" == 1 ]]
}

# --- up / down --------------------------------------------------------------------------------

up() {
  [[ $EUID -eq 0 ]] || die "the cluster needs root (network, mounts, containerd)"
  ensure_packages
  local started=$SECONDS bin coredns version
  bin="$(bin_dir)"
  coredns="$(bash "$ROOT/scripts/k8s-binaries.sh" coredns)"
  mkdir -p "$STATE" "$LOGS" "$RUN"
  if running kube-apiserver && node_ready && dns_ready; then
    log "already running (KUBECONFIG=$KUBECONFIG_ADMIN)"
    return
  fi
  version="$("$bin/kubectl" version --client 2>/dev/null | sed -n 's/^Client Version: //p')"
  local pause_image="ledgerline-local/pause:$version"
  local coredns_image
  coredns_image="ledgerline-local/coredns:$(basename "$(dirname "$coredns")" | sed 's/^coredns-//')"
  docker info >/dev/null 2>&1 || die "a Docker daemon must answer (scripts/images.sh docker starts one)"
  local_image "$pause_image" "$bin/pause" /pause
  local_image "$coredns_image" "$coredns" /coredns

  [[ -f "$PKI/ca.crt" ]] || make_pki
  [[ -f "$STATE/netns-before" ]] || { ls -d /var/run/netns/cni-* 2>/dev/null || true; } >"$STATE/netns-before"
  network_up
  containerd_up "$(normalized "$pause_image")"
  load_image "$pause_image"
  load_image "$coredns_image"
  etcd_up
  control_plane_up "$bin"
  node_up "$bin"
  wait_for 180 "node $NODE Ready" node_ready || { tail -n 40 "$LOGS/kubelet.log" >&2; exit 1; }
  addons_up "$(normalized "$coredns_image")"
  wait_for 180 "CoreDNS Ready" dns_ready || { kctl -n kube-system get pods -o wide >&2; exit 1; }
  log "up in $((SECONDS - started)) s: KUBECONFIG=$KUBECONFIG_ADMIN, kubectl $bin/kubectl ($version)"
}

unmount_under() {  # every mount below a directory, deepest first
  local dir="$1" m
  [[ -d "$dir" ]] || return 0
  # (the kubelet also bind-mounts its root directory onto itself)
  awk -v d="$dir" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}

down() {
  local bin
  bin="$(bin_dir 2>/dev/null || true)"
  # No new pods: stop the scheduler and the controllers, then let the kubelet stop every pod
  # gracefully (containers get SIGTERM, the CNI plugin tears down each pod's network).
  stop kube-scheduler
  stop kube-controller-manager
  if running kube-apiserver && running kubelet && [[ -n "$bin" ]]; then
    kctl delete pods --all --all-namespaces --grace-period=10 --timeout=90s >/dev/null 2>&1 || true
  fi
  stop kube-proxy
  stop kubelet
  if running containerd; then
    local task c
    for task in $(ctr_k8s tasks ls -q 2>/dev/null); do ctr_k8s tasks kill -s KILL "$task" >/dev/null 2>&1 || true; done
    sleep 1
    for task in $(ctr_k8s tasks ls -q 2>/dev/null); do ctr_k8s tasks delete -f "$task" >/dev/null 2>&1 || true; done
    for c in $(ctr_k8s containers ls -q 2>/dev/null); do ctr_k8s containers delete "$c" >/dev/null 2>&1 || true; done
  fi
  stop kube-apiserver
  stop etcd
  stop containerd
  unmount_under "$STATE/kubelet"
  unmount_under "$STATE/containerd/state"
  unmount_under "$STATE/containerd/root"
  # Network namespaces made for this cluster's pods (not there before `up`).
  local ns
  for ns in /var/run/netns/cni-*; do
    [[ -e "$ns" ]] || continue
    grep -qxF "$ns" "$STATE/netns-before" 2>/dev/null && continue
    umount "$ns" 2>/dev/null || true
    rm -f "$ns" 2>/dev/null || true
  done
  network_down
  # Keep containerd's content and snapshots (the imported images) for the next run; drop the
  # cluster itself: etcd, certificates, kubelet, CNI addresses, volumes, pods' metadata.
  rm -rf "$STATE/etcd" "$STATE/kubelet" "$STATE/cni" "$STATE/volumes" "$PKI" "$RUN" \
    "$STATE/containerd/state" "$STATE"/*.kubeconfig "$STATE/netns-before"
  log "down"
}


case "${1:-}" in
  up) up ;;
  down) down ;;
  status) kctl get --raw /readyz >/dev/null 2>&1 && node_ready ;;
  env)
    echo "KUBECONFIG=$KUBECONFIG_ADMIN"
    echo "KUBECTL=$(bin_dir)/kubectl"
    ;;
  load)
    shift
    for image in "$@"; do load_image "$image"; done
    ;;
  *) echo "usage: $0 {up|down|status|env|load IMAGE...}" >&2; exit 2 ;;
esac
