//! `unshare`: a command run in a user namespace, as upstream's CLI runs
//! it. Without the host's root, the namespace maps the caller to root:
//! its subordinate IDs (`/etc/subuid`, `/etc/subgid`) through the setuid
//! helpers `newuidmap`/`newgidmap` where both are there, else (as
//! upstream falls back) only the caller's own IDs. With the host's root
//! the command runs as it is, as upstream runs it.
//!
//! `new_user_namespace` makes the namespace, for `unshare` and for the
//! idmapped lower layers of shifted mounts (`store/shifting.rs`).

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use crate::error::{Error, IoContext, Op, Result};
use crate::store::{subid_map, IdMap};
use crate::sys;

/// Runs `argv` (the program first) with the standard streams of this
/// process, in a user namespace when this process lacks the host's root;
/// returns how it ended.
pub fn run_in_user_namespace(argv: &[OsString]) -> Result<ExitStatus> {
    let Some((program, args)) = argv.split_first() else {
        return Err(Error::BadArgument {
            arg: String::new(),
            what: "no command to run".into(),
        });
    };
    let mut cmd = Command::new(program);
    cmd.args(args);
    if crate::store::rootless::is_rootless() {
        let userns = new_user_namespace(|pid, dir| {
            if with_helpers(pid) {
                return Ok(());
            }
            let uid = nix::unistd::geteuid().as_raw();
            let gid = nix::unistd::getegid().as_raw();
            let write = |file: &str, text: String| {
                let path = dir.join(file);
                std::fs::write(&path, text).at(Op::Write, &path)
            };
            write("uid_map", format!("0 {uid} 1\n"))?;
            write("setgroups", "deny".into())?;
            write("gid_map", format!("0 {gid} 1\n"))
        })?;
        sys::join_user_namespace(&mut cmd, userns);
    }
    let mut child = cmd.spawn().at(Op::Run, Path::new(program))?;
    child.wait().at(Op::Run, Path::new(program))
}

/// A new user namespace, held by a descriptor (a namespace lives while
/// one refers to it): made by a process started in it, whose ID maps
/// `map` writes (given the process's PID and `/proc/<pid>`), killed and
/// reaped once the descriptor is open.
pub(crate) fn new_user_namespace(
    map: impl FnOnce(libc::pid_t, &Path) -> Result<()>,
) -> Result<OwnedFd> {
    let proc_self = Path::new("/proc/self");
    let pid = sys::spawn_in_new_user_namespace().at(Op::UserNamespace, proc_self)?;
    let dir = PathBuf::from(format!("/proc/{pid}"));
    let opened = map(pid, &dir).and_then(|()| {
        let ns = dir.join("ns/user");
        let file = std::fs::File::open(&ns).at(Op::Open, &ns)?;
        Ok(OwnedFd::from(file))
    });
    let holder = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(holder, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(holder, None);
    opened
}

/// Maps the caller's own IDs to root and its subordinate ranges from 1
/// on, with `newuidmap` and `newgidmap`; whether both did.
fn with_helpers(pid: libc::pid_t) -> bool {
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten();
    let Some(user) = user else {
        return false;
    };
    let group = nix::unistd::Group::from_gid(nix::unistd::getegid())
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_else(|| user.name.clone());
    let maps = (subid_map(&user.name, true), subid_map(&group, false));
    let (Ok(uids), Ok(gids)) = maps else {
        return false;
    };
    let run = |helper: &str, own: u32, ranges: &[IdMap]| {
        let mut args = vec![pid.to_string(), "0".into(), own.to_string(), "1".into()];
        let mut next = 1u32;
        for r in ranges {
            args.extend([next.to_string(), r.host_id.to_string(), r.size.to_string()]);
            next = next.saturating_add(r.size);
        }
        Command::new(helper)
            .args(&args)
            .status()
            .is_ok_and(|s| s.success())
    };
    run("newuidmap", user.uid.as_raw(), &uids) && run("newgidmap", user.gid.as_raw(), &gids)
}
