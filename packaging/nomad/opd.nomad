# opd.nomad: an EXAMPLE Nomad system job that runs opd on every KVM client node, serving a
# node-local UNIX socket /run/opd/opd.sock. See docs/fleet.md for the sizing math and for what
# a container needs to run opd (the same list, with reasons), docs/operations.md for every
# configuration key, docs/security.md for opd-jail, and docs/s3.md for the snapshot bucket.
#
# NOT TESTED ON A CLUSTER. What is checked (tests/integration/test_fleet_examples.py): the
# opd.conf below (locals) passes `opd --check-config`, with and without the S3 lines
# ("#s3 " turned on), and the file's braces, brackets, quotes and heredocs balance (no HCL
# parser runs there). The docker options are worked out from opd.service (tested under a real
# systemd) and from Docker's own profiles, not from a run under Nomad.
#
# Container image: out of scope here (no Dockerfile ships). It must contain:
#   - /usr/sbin/opd, /usr/libexec/opd/opd-jail, /usr/sbin/opd-s3d and /usr/bin/opctl
#     (cmake --install build, prefix /usr), and /usr/share/opd/languages.json plus
#     /usr/share/opd/warm/ (the `languages` default);
#   - qemu-system-x86_64 8.2 or later: opd refuses an older QEMU at start (read-only snapshot
#     memory needs it). On a Debian 12 base that is qemu-system-x86 from bookworm-backports
#     (10.0, what scripts/deps installs); Debian 13 ships 10.0. A snapshot loads only on the
#     QEMU release (and machine line) and accelerator that made it, so a new QEMU in the image
#     means new snapshots (made by each node, or pushed to the bucket for that image);
#   - the built guest images (packaging/images/build-images --out /usr/share/opd/images):
#     vmlinux, initrd.img and <lang>/rootfs.ext4 per language;
#   - a user "opd" (jail.user; not root and outside jail.uid_min..jail.uid_max) whose primary
#     group is a group "opd" whose gid matches the nodes' (990 in this example; see
#     access.group), and ca-certificates (opd-s3d's HTTPS).
#
# Client nodes: KVM, with /dev/kvm mode 0666 (Debian's udev rules make it so): opd and every
# VMM open it as their own uids, with no supplementary group. Under TCG (no usable KVM) opd
# starts but refuses to serve (allow_tcg = no, the default: software emulation is no isolation
# boundary) and answers every exec `unavailable`. packaging/container/opd-seccomp.json copied
# to /etc/opd/opd-seccomp.json on every client (Nomad reads it there, see security_opt).
#
# Client agent configuration this job needs (docker driver):
#   plugin "docker" {
#     config {
#       volumes { enabled = true }   # bind mounts of /var/lib/opd and /run/opd below
#       # Nomad's default list plus SYS_ADMIN, which opd-jail needs (cap_add below)
#       allow_caps = ["audit_write", "chown", "dac_override", "fowner", "fsetid", "kill",
#                     "mknod", "net_bind_service", "setfcap", "setgid", "setpcap", "setuid",
#                     "sys_chroot", "sys_admin"]
#     }
#   }
# memory_max below is honoured only with memory oversubscription enabled
# (nomad operator scheduler set-config -memory-oversubscription=true); otherwise the
# container's limit is `memory`.
#
# Do not also run opd.service/opd.socket (systemd/) on these nodes: both want /run/opd/opd.sock
# and /var/lib/opd.

# opd's configuration, rendered by the opd task's template (and the opd-s3d task's, which
# reads the s3.* keys of the same file).
locals {
  opd_conf = <<-EOT
    # opd's own format: "key = value", '#' comments, no quoting, no comment after a
    # value; an unknown key or a bad value stops opd at start-up.
    socket = /run/opd/opd.sock
    socket_mode = 0660
    # Clients: root, opd's user, and peers with the group "opd" (getgrnam inside the
    # container) as their primary group or among their supplementary groups, as the
    # kernel recorded them when they connected (SO_PEERGROUPS): whatever PID namespace
    # the client is in. Group ids are those of opd's user namespace (the node's here).
    access.group = opd
    images_dir = /usr/share/opd/images
    # Served languages: the sizing below is for these two; others answer unknown_language
    # and keep no pool (without it, every language with an image gets pool.size clones).
    languages.enabled = bash,python
    # opd gives cache_dir's directories to its user (jail.user) at start, 0750.
    cache_dir = /var/lib/opd/cache
    # VM directories a killed opd left are removed at start.
    run_dir = /run/opd-vm
    # Every VMM in a jail of its own (docs/security.md): the defaults, spelled out.
    jail = yes
    jail.user = opd
    jail.uid_min = 1879048192
    jail.uid_max = 1879049215
    accel = auto
    allow_tcg = no
    vm.memory_mb = 512
    vm.vcpus = 1
    # Sizing (docs/fleet.md): standing pools of 6 paused, primed clones, room for 6 more
    # VMs running; a pool grows up to pool.max_size under demand, within max_vms.
    pool.size = 2
    pool.sizes = python=4,bash=2
    pool.max_size = 8
    max_vms = 12
    # Set it: the default 0 means the node's CPUs online, not the task's share.
    max_restores = 2
    pool.fallback_cold = yes
    #
    # --- Shared snapshot bucket (docs/s3.md): off. Without it, each node makes its own
    # snapshots, one language at a time (snapshot.create_missing = yes, the default).
    # To share one set instead, remove "#s3 " from every line of this file that starts
    # with it (these keys and the opd-s3d task below), store the credentials as the
    # Nomad variable nomad/jobs/opd (aws_access_key_id, aws_secret_access_key) and put
    # your public key in s3.trusted_keys: with s3.bucket set, opd makes no snapshot
    # itself and serves only versions signed by a key of s3.trusted_keys. Publish from a
    # build machine with the same image and accelerator as the nodes, holding the
    # signing key and the credentials, never from a node:
    #   opctl snapshot keygen --out sign.pem            # once; prints ed25519:<hex>
    #   opd --config build.conf --create-snapshot python
    #   opctl --config build.conf snapshot push --lang python --sign-key sign.pem
    # s3.prefix: one per image (QEMU release) and accelerator; a node refuses a version
    # made by another QEMU release or accelerator and keeps serving what it has.
    #s3 s3.bucket = opd-snapshots
    #s3 s3.region = eu-west-1
    #s3 s3.endpoint = https://s3.eu-west-1.amazonaws.com
    #s3 s3.prefix = snapshots/qemu-10.0.2-kvm/
    #s3 s3.trusted_keys = ed25519:0000000000000000000000000000000000000000000000000000000000000000
    #s3 s3.gateway = /alloc/data/s3.sock
    #s3 s3.sync_minutes = 15
    #s3 s3.reserve_mb = 1024
  EOT
}

job "opd" {
  type        = "system"   # one allocation on every eligible client
  datacenters = ["*"]

  # KVM nodes only (see the header), e.g. with meta { opd_kvm = "true" } in their client
  # configuration. On a node without /dev/kvm the `devices` entry below fails the task anyway.
  constraint {
    attribute = "${meta.opd_kvm}"
    value     = "true"
  }

  update {
    max_parallel = 1
    stagger      = "30s"
  }

  group "opd" {
    restart {
      attempts = 5
      interval = "10m"
      delay    = "5s"
      mode     = "delay"
    }

    task "opd" {
      driver = "docker"

      config {
        image   = "registry.example/opd:VERSION"   # placeholder: see the header
        command = "/usr/sbin/opd"
        args    = ["--config", "/local/opd.conf"]   # the template below; local/ is /local

        # What opd needs, and nothing more than opd.service gives it (systemd/opd.service,
        # docs/security.md):
        # - uid 0 at start (user below): opd starts opd-jail as root, gives run_dir and
        #   cache_dir to jail.user, binds its socket, then becomes jail.user (no groups, no
        #   capabilities, no_new_privs) before it reads any request.
        # - capabilities: exactly opd.service's CapabilityBoundingSet=. Kept by opd-jail alone:
        #   sys_admin (namespaces, mounts, pivot_root, sethostname in each VMM's own
        #   namespaces), setuid/setgid (the VM's uid), setpcap (emptying the VMM's bounding
        #   set), kill (VMMs of other uids). chown/fowner/dac_override: opd at its start, as
        #   root (run_dir and cache_dir given to jail.user, stale VM directories removed).
        #   Every VMM runs with none. Anyone who may
        #   `nomad alloc exec` into this task gets them too: keep that to node administrators.
        cap_drop = ["all"]
        cap_add  = ["sys_admin", "setuid", "setgid", "setpcap", "kill", "chown", "fowner",
                    "dac_override"]
        # - no-new-privileges: as opd.service's NoNewPrivileges=yes; root keeps its
        #   capabilities across opd-jail's exec under it.
        # - seccomp: opd-jail calls mount, umount2, pivot_root and sethostname. Docker's
        #   default profile has no pivot_root even with CAP_SYS_ADMIN, so every VM would fail.
        #   opd-seccomp.json is opd.service's SystemCallFilter= as a file (made by
        #   packaging/container/make-seccomp-profile); Nomad reads it on the client. Not in it:
        #   opd.service's RestrictNamespaces= (no user namespace). QEMU adds its own filter
        #   in every VMM (-sandbox on).
        # - AppArmor: Docker's default profile (docker-default) denies every mount (and
        #   pivot_root), so opd-jail cannot build a jail under it: unconfined. A profile of
        #   your own allowing mount, umount and pivot_root is the tighter way (none ships).
        #   SELinux-enforcing nodes: untested.
        security_opt = ["no-new-privileges", "seccomp=/etc/opd/opd-seccomp.json",
                        "apparmor=unconfined"]
        # - /dev/kvm: the docker driver's `devices` adds this one device node to the
        #   container's device cgroup with rw access, so the container stays unprivileged
        #   (privileged = true would hand over every host device and every capability, and
        #   needs allow_privileged in the plugin config).
        devices = [
          {
            host_path          = "/dev/kvm"
            container_path     = "/dev/kvm"
            cgroup_permissions = "rw"
          }
        ]
        # - cgroups: opd-jail puts each VM in a cgroup leaf of its own (memory.max, pids.max,
        #   cpu.weight: jail.*) only inside a delegated cgroup v2 subtree it may write. A
        #   container usually sits at the root of a cgroup namespace of its own with
        #   /sys/fs/cgroup read-only (either rules it out), so there are no per-VM limits here:
        #   opd logs "jail: no per-VM memory, pids and cpu limits: ..." and `opctl status`
        #   shows "cgroup": "none". The task's own resources below bound all VMs together.
        readonly_rootfs = true
        # No network at all: guests have none and opd speaks only over UNIX sockets; S3
        # goes through the opd-s3d task's socket.
        network_mode = "none"

        mount {   # snapshots (cache_dir): on the node, they survive restarts and updates
          type   = "bind"
          source = "/var/lib/opd"
          target = "/var/lib/opd"
        }
        mount {   # the socket, seen by the node as /run/opd/opd.sock
          type   = "bind"
          source = "/run/opd"
          target = "/run/opd"
        }
        mount {   # run_dir: a fresh tmpfs per container
          type   = "tmpfs"
          target = "/run/opd-vm"
          tmpfs_options {
            size = 67108864   # an empty directory per VM; counts against memory
          }
        }
        mount {   # read-only root file system
          type   = "tmpfs"
          target = "/tmp"
          tmpfs_options {
            size = 67108864
          }
        }
      }

      # uid 0 (see above) with primary gid 990, group "opd" on the nodes: the socket is bound
      # while opd is root and gets this gid, for the clients.
      user = "0:990"

      # Nomad may create the bind sources as root 0755 on first start; the tmpfiles in
      # systemd/ are for the systemd install, not for this one.

      # opd reads its configuration again on SIGHUP (docs/operations.md, "Reloading"): pool
      # sizes, limits and access groups change in place; keys that name places or the machine
      # (socket, run_dir, cache_dir, accel, jail.*, ...) wait for a restart, with a warning in
      # the log (nomad alloc restart, which empties the pools). An invalid file is refused and
      # the running configuration stays.
      template {
        destination   = "local/opd.conf"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = local.opd_conf
      }

      # env {
      #   OPD_DEBUG = "1"   # debug lines (client connections, restore times)
      # }

      # From docs/fleet.md (measured under TCG, 512 MiB guests, primed clones: python ~99 MiB
      # RSS / ~79 MiB PSS, bash ~88 / ~71 per paused VM; growth while running is an
      # ASSUMPTION):
      #   memory     = paused pools 4 x 99 + 2 x 88 MiB + snapshot page cache (100 + 84 MiB)
      #                + opd and opd-jail ~64 MiB + the two 64 MiB tmpfs   = ~950 MiB -> 1024
      #   memory_max = max_vms 12 x (99 + 128 assumed growth) = 2724 MiB + 184 MiB page cache
      #                + 512 MiB for a snapshot being made + 64 MiB opd = ~3484 -> 3584
      #   cpu        = MHz reserved for scheduling: about one core (restores and primes keep
      #                max_restores = 2 cores busy while a pool refills). Nomad's docker driver
      #                sets CPU shares, not a hard quota, by default.
      # With no per-VM cgroup (above), one VM may grow to its whole guest RAM (512 MiB) plus
      # QEMU's own; if every VM did, 12 of them need ~7.3 GiB. Raise memory_max with max_vms
      # or pool.sizes: hitting it OOM-kills inside the container.
      resources {
        cpu        = 2000
        memory     = 1024
        memory_max = 3584
      }

      # Readiness: opd answers on its socket. Script checks need a Consul service (the
      # nomad service provider has no script checks). opd binds the socket before the KVM probe
      # (up to 15 s) and before any snapshot is served: "passing" means "answers", not
      # "warm" (see `opctl status` for the pools); a node that refuses to serve under TCG
      # answers, but `opctl ping` exits 2 there (ping: "serving": false), so it never passes.
      # No check_restart: a restart throws away every pooled VM.
      service {
        name     = "opd"
        provider = "consul"
        check {
          name     = "opctl ping"
          type     = "script"
          command  = "/usr/bin/opctl"
          args     = ["--socket", "/run/opd/opd.sock", "ping"]
          interval = "10s"
          timeout  = "12s"   # opctl waits up to 10 s for the answer
        }
      }

      kill_timeout = "30s"   # opd stops in well under a second on SIGTERM
    }

    #s3 # opd-s3d, the S3 gateway: the only process of the allocation with the network and the
    #s3 # credentials. A prestart sidecar: it starts before opd and runs beside it. Its socket
    #s3 # is in the allocation's shared directory (/alloc/data, 0777, in every task of the
    #s3 # group), which opd reaches with no network of its own. Should opd's first sync at start
    #s3 # come before the socket exists, `opctl snapshot sync` (or s3.sync_minutes) fetches.
    #s3 task "opd-s3d" {
    #s3   driver = "docker"
    #s3
    #s3   lifecycle {
    #s3     hook    = "prestart"
    #s3     sidecar = true
    #s3   }
    #s3
    #s3   config {
    #s3     image           = "registry.example/opd:VERSION"   # the same image
    #s3     command         = "/usr/sbin/opd-s3d"
    #s3     args            = ["--config", "/local/opd.conf"]   # s3.gateway names the socket
    #s3     cap_drop        = ["all"]
    #s3     security_opt    = ["no-new-privileges"]
    #s3     readonly_rootfs = true
    #s3   }
    #s3
    #s3   # It binds the socket with mode 0660 and its own gid: group "opd" (990), so that opd,
    #s3   # running as jail.user (primary group opd), may connect; a uid that owns nothing.
    #s3   user = "65534:990"
    #s3
    #s3   # The same opd.conf as opd's task (opd-s3d reads the s3.* keys of it).
    #s3   template {
    #s3     destination = "local/opd.conf"
    #s3     change_mode = "restart"
    #s3     data        = local.opd_conf
    #s3   }
    #s3
    #s3   # The credentials, from the Nomad variable nomad/jobs/opd, into this task's
    #s3   # environment only (never opd's).
    #s3   template {
    #s3     destination = "secrets/s3.env"
    #s3     env         = true
    #s3     change_mode = "restart"
    #s3     data        = <<-EOT
    #s3       {{ with nomadVar "nomad/jobs/opd" }}
    #s3       AWS_ACCESS_KEY_ID={{ .aws_access_key_id }}
    #s3       AWS_SECRET_ACCESS_KEY={{ .aws_secret_access_key }}
    #s3       {{ end }}
    #s3     EOT
    #s3   }
    #s3
    #s3   # s3.parallel (8) chunk GETs of 4 MiB at once, bodies of at most 64 MiB.
    #s3   resources {
    #s3     cpu    = 100
    #s3     memory = 256
    #s3   }
    #s3 }
  }
}

# Clients on a node: bind-mount /run/opd into the client's task and give it the group "opd"
# (990 here) as its primary or a supplementary group (docker driver: group_add), or run it as
# uid 0. There is no network service: the socket is node-local by design (docs/fleet.md,
# "Spreading load").
