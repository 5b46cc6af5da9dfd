//! `uid`/`user` and `gid` → numeric ids, by reading `/etc/passwd` and `/etc/group`.
//!
//! Why no NSS (getpwnam): pmi is a static musl binary, and musl does not load NSS modules; in a
//! container the two files are the whole truth anyway. Reading them directly also keeps loading
//! free of libc global state.
//!
//! Invariant: a name that is in neither file is an error, never a silent "run as root"; a numeric
//! id is accepted as it is even when no entry names it (images often run as an arbitrary uid).

use std::path::Path;

/// One `/etc/passwd` line that matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The users and groups of a system, read once per load.
#[derive(Debug, Default)]
pub struct Db {
    pub users: Vec<User>,
    pub groups: Vec<Group>,
}

impl Db {
    /// Reads `<etc>/passwd` and `<etc>/group`; a missing file is an empty list.
    pub fn read(etc: &Path) -> Db {
        let text = |f: &str| std::fs::read_to_string(etc.join(f)).unwrap_or_default();
        Db {
            users: parse_passwd(&text("passwd")),
            groups: parse_group(&text("group")),
        }
    }

    /// A user by name or number. A number with no entry gives a user without a name.
    pub fn user(&self, spec: &str) -> Result<(u32, Option<&User>), String> {
        let spec = spec.trim();
        if let Ok(uid) = spec.parse::<u32>() {
            return Ok((uid, self.users.iter().find(|u| u.uid == uid)));
        }
        match self.users.iter().find(|u| u.name == spec) {
            Some(u) => Ok((u.uid, Some(u))),
            None => Err(format!(
                "no user named {spec:?} in /etc/passwd; create it in the image (useradd/adduser) or give a numeric uid"
            )),
        }
    }

    pub fn group(&self, spec: &str) -> Result<u32, String> {
        let spec = spec.trim();
        if let Ok(gid) = spec.parse::<u32>() {
            return Ok(gid);
        }
        self.groups
            .iter()
            .find(|g| g.name == spec)
            .map(|g| g.gid)
            .ok_or_else(|| {
                format!(
                    "no group named {spec:?} in /etc/group; create it in the image (groupadd/addgroup) or give a numeric gid"
                )
            })
    }

    /// The supplementary groups of a user: every group that lists the name as a member.
    pub fn supplementary(&self, user: &str) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .groups
            .iter()
            .filter(|g| g.members.iter().any(|m| m == user))
            .map(|g| g.gid)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// `name:x:uid:gid:gecos:home:shell`; malformed lines and comments are skipped.
fn parse_passwd(text: &str) -> Vec<User> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(User {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).map(|h| h.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

/// `name:x:gid:member,member`.
fn parse_group(text: &str) -> Vec<Group> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(Group {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Db {
        Db {
            users: parse_passwd(
                "root:x:0:0:root:/root:/bin/sh\n# c\nnode:x:1000:1000::/home/node:/bin/sh\nbroken\n",
            ),
            groups: parse_group("root:x:0:\nnode:x:1000:\ndocker:x:999:node,bob\nvideo:x:44:node\n"),
        }
    }

    #[test]
    fn users_by_name_and_number() {
        let d = db();
        let (uid, u) = d.user("node").unwrap();
        assert_eq!((uid, u.map(|u| u.gid)), (1000, Some(1000)));
        assert_eq!(d.user("4242").unwrap(), (4242, None));
        assert!(d.user("nobody-here").unwrap_err().contains("/etc/passwd"));
    }

    #[test]
    fn groups_and_supplementary() {
        let d = db();
        assert_eq!(d.group("docker"), Ok(999));
        assert_eq!(d.group("12"), Ok(12));
        assert!(d.group("wheel").is_err());
        assert_eq!(d.supplementary("node"), vec![44, 999]);
        assert!(d.supplementary("root").is_empty());
    }

    #[test]
    fn reads_files_from_a_directory() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("passwd"), "app:x:10:20::/:/bin/sh\n").unwrap();
        let d = Db::read(t.path());
        assert_eq!(d.user("app").unwrap().0, 10);
        assert!(d.groups.is_empty());
    }
}
