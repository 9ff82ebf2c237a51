# opd.nomad: an EXAMPLE Nomad system job that runs opd on every client node, serving a
# node-local UNIX socket /run/opd/opd.sock. See docs/fleet.md for the sizing math and
# docs/operations.md for every configuration key. Not tested against a real cluster yet.
#
# Container image: out of scope here (no Dockerfile ships). It must contain:
#   - /usr/sbin/opd and /usr/bin/opctl (cmake --install build, prefix /usr), and
#     /usr/share/opd/languages.json plus /usr/share/opd/warm/ (the `languages` default);
#   - qemu-system-x86_64 from Debian 12 (package qemu-system-x86; a snapshot loads only on the
#     QEMU release that made it, so a new QEMU in the image means new snapshots per node);
#   - the built guest images (packaging/images/build-images --out /usr/share/opd/images):
#     vmlinux, initrd.img and <lang>/rootfs.ext4 per language;
#   - a group "opd" whose gid matches the nodes' (990 in this example; see access.group).
#
# Client agent configuration this job needs (docker driver):
#   plugin "docker" {
#     config {
#       volumes { enabled = true }   # bind mounts of /var/lib/opd and /run/opd below
#     }
#   }
# memory_max below is honoured only with memory oversubscription enabled
# (nomad operator scheduler set-config -memory-oversubscription=true); otherwise the
# container's limit is `memory`.
#
# Do not also run opd.service/opd.socket (systemd/) on these nodes: both want /run/opd/opd.sock
# and /var/lib/opd.

job "opd" {
  type        = "system"   # one allocation on every eligible client
  datacenters = ["*"]

  # Nodes without /dev/kvm: the device below makes the container fail to start there. Run a
  # copy of this job without the `devices` block (TCG only) and split the two, e.g.:
  # constraint {
  #   attribute = "${meta.opd_kvm}"
  #   value     = "true"
  # }

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

        # /dev/kvm: the docker driver's `devices` adds this one device node to the
        # container's device cgroup with rw access, so the container stays unprivileged
        # (privileged = true would also work but hands over every host device and every
        # capability, and needs allow_privileged in the plugin config). No capability is
        # needed to open /dev/kvm: the task runs as uid 0 with all capabilities dropped, and
        # /dev/kvm is root:kvm 0660, so root opens it as its owner. If KVM cannot run a guest,
        # accel = auto logs why and falls back to TCG.
        devices = [
          {
            host_path          = "/dev/kvm"
            container_path     = "/dev/kvm"
            cgroup_permissions = "rw"
          }
        ]
        cap_drop        = ["ALL"]
        security_opt    = ["no-new-privileges"]
        readonly_rootfs = true
        # Guests have no network and opd speaks only over UNIX sockets.
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
        mount {   # run_dir: a fresh tmpfs per container, so no vm-1-<n> left from the last one
          type   = "tmpfs"
          target = "/run/opd-vm"
          tmpfs_options {
            size = 67108864   # console.log and qemu.log per VM; counts against memory
          }
        }
        mount {   # read-only root file system: QEMU may want /tmp
          type   = "tmpfs"
          target = "/tmp"
          tmpfs_options {
            size = 67108864
          }
        }
      }

      user = "0"   # see devices above; `opctl snapshot create` is uid 0 only

      # Nomad may create the bind sources as root 0755 on first start; the tmpfiles in
      # systemd/ are for the systemd install, not for this one.

      # opd reads its configuration at start-up only and does not handle SIGHUP (it would
      # end the process): a changed template must restart the task, never signal it.
      template {
        destination = "local/opd.conf"
        change_mode = "restart"
        data        = <<-EOT
          # opd's own format: "key = value", '#' comments, no quoting, no comment after a
          # value; an unknown key stops opd at start-up.
          socket = /run/opd/opd.sock
          socket_mode = 0660
          # Clients: root, opd's uid, and peers whose PRIMARY gid is "opd" (getgrnam inside
          # the container). Supplementary groups are read from /proc/<peer pid>/status, and a
          # peer outside the container's PID namespace has no pid there, so they do not count.
          access.group = opd
          images_dir = /usr/share/opd/images
          cache_dir = /var/lib/opd/cache
          run_dir = /run/opd-vm
          accel = auto
          vm.memory_mb = 512
          vm.vcpus = 1
          # Sizing (docs/fleet.md): 6 paused clones, room for 6 more VMs running.
          pool.size = 2
          pool.sizes = python=4,bash=2
          max_vms = 12
          max_restores = 2
          pool.fallback_cold = yes
          #
          # --- Shared snapshot bucket: PLACEHOLDER, NOT IMPLEMENTED ---
          # S3 sync of the snapshot cache does not exist in opd yet (issue open). Keys like
          # these would stop opd today as unknown keys; keep them commented. Until it exists,
          # make the snapshots on every node, in each allocation:
          #   nomad alloc exec -task opd <alloc> opctl snapshot create --lang python
          #   nomad alloc exec -task opd <alloc> opctl snapshot create --lang bash
          # s3.bucket = opd-snapshots
          # s3.prefix = debian12/qemu-7.2
          # s3.region = eu-west-1
          # s3.endpoint = https://s3.example.internal
          # (credentials would come from Vault / Nomad variables, not from this file)
        EOT
      }

      # env {
      #   OPD_DEBUG = "1"   # debug lines (client connections, restore times)
      # }

      # From docs/fleet.md (measured under TCG, 512 MiB guests: ~92 MiB RSS / ~63 MiB PSS
      # per paused VM; growth while running is an ASSUMPTION):
      #   memory     = paused pool 6 x 92 MiB + snapshot page cache (98 + 84 MiB)
      #                + opd ~64 MiB + the two 64 MiB tmpfs           = ~950 MiB -> 1024
      #   memory_max = max_vms 12 x (92 + 128 assumed growth) = 2640 MiB + 182 MiB page cache
      #                + 512 MiB for a snapshot being made + 64 MiB opd = ~3400 -> 3584
      #   cpu        = MHz reserved for scheduling: about one core (restores and primes under
      #                TCG keep max_restores = 2 cores busy while a pool refills). Nomad's
      #                docker driver sets CPU shares, not a hard quota, by default.
      # Raise memory_max with max_vms or pool.sizes: hitting it OOM-kills inside the container.
      resources {
        cpu        = 2000
        memory     = 1024
        memory_max = 3584
      }

      # Readiness: opd answers on its socket. Script checks need a Consul service (the
      # nomad service provider has no script checks). opd binds the socket before the KVM probe
      # (up to 15 s) and before any snapshot is served: "passing" means "answers", not
      # "warm"; see `opctl status` for the pools. No check_restart: a restart throws away
      # every pooled VM.
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
  }
}

# Clients on a node: bind-mount /run/opd into the client's task and run it with primary gid
# "opd" (990 here) or as uid 0. There is no network service: the socket is node-local by
# design (docs/fleet.md, "Spreading load").
