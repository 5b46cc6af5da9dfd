//! `uid` / `gid`: users and groups looked up in /etc, and whether pmi may switch to them.

use super::top::RawApp;
use super::Validator;
use crate::config::units;

impl Validator<'_> {
    /// uid/supplementary groups, and the user's home (pm2 sets HOME for a `uid` user).
    pub(super) fn ids(
        &mut self,
        raw: &RawApp,
    ) -> (Option<u32>, Option<u32>, Vec<u32>, Option<String>) {
        // With `pmi check --file-only` a name that this machine's /etc
        // does not know is not an error: the image the file is for may have it.
        let user = self
            .field(raw, "uid", |v, n| {
                let s = units::string(n)?;
                let lenient = v.opts.file_only;
                match v.users().user(&s) {
                    Ok((uid, u)) => Ok(Some((uid, u.cloned()))),
                    Err(_) if lenient => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .flatten();
        let gid = self
            .field(raw, "gid", |v, n| {
                let s = units::string(n)?;
                let lenient = v.opts.file_only;
                match v.users().group(&s) {
                    Ok(g) => Ok(Some(g)),
                    Err(_) if lenient => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .flatten();
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        let switches = user.as_ref().is_some_and(|(u, _)| *u != euid) || gid.is_some();
        if self.opts.check_scripts && euid != 0 && switches {
            let key = if user.is_some() { "uid" } else { "gid" };
            let pos = raw.get(key).map_or(raw.node.pos, |e| e.value.pos);
            self.d.error(
                pos,
                Some(raw.label.as_str()),
                Some(key),
                format!("switching user or group needs pmi to run as root (it runs as uid {euid}); run pmi as root, or drop `uid`/`gid` and set the container's user instead"),
            );
        }
        match user {
            Some((uid, Some(u))) => {
                let groups = self.users().supplementary(&u.name);
                let home = Some(u.home.clone()).filter(|h| !h.is_empty());
                (Some(uid), gid.or(Some(u.gid)), groups, home)
            }
            Some((uid, None)) => (Some(uid), gid, Vec::new(), None),
            None => (None, gid, Vec::new(), None),
        }
    }
}
