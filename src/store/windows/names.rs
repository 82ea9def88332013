//! Sections and languages interned to `u32` ids with a count of the articles using
//! each, so an article holds 4 bytes per field and a name no article uses any more
//! (a flood of invented sections) is freed.

use std::hash::BuildHasher;

use hashbrown::HashTable;

/// A name's id; 0 is "none".
pub type NameId = u32;

#[derive(Debug)]
struct Entry {
    name: Box<str>,
    users: u32,
}

/// The interned names; id `i` is `entries[i - 1]`.
#[derive(Debug, Default)]
pub struct Names {
    entries: Vec<Option<Entry>>,
    index: HashTable<NameId>,
    hasher: foldhash::fast::RandomState,
    free: Vec<NameId>,
}

fn entry(entries: &[Option<Entry>], id: NameId) -> &Entry {
    entries[id as usize - 1].as_ref().expect("a used name id")
}

impl Names {
    /// The id of `name`, if some article uses it.
    pub fn find(&self, name: &str) -> Option<NameId> {
        let entries = &self.entries;
        self.index
            .find(self.hasher.hash_one(name), |&id| &*entry(entries, id).name == name)
            .copied()
    }

    /// The id of `name`, counting one more user.
    pub fn acquire(&mut self, name: &str) -> NameId {
        if let Some(id) = self.find(name) {
            self.entries[id as usize - 1].as_mut().expect("found").users += 1;
            return id;
        }
        let e = Some(Entry {
            name: name.into(),
            users: 1,
        });
        let id = match self.free.pop() {
            Some(id) => {
                self.entries[id as usize - 1] = e;
                id
            }
            None => {
                self.entries.push(e);
                NameId::try_from(self.entries.len()).expect("fewer names than u32 ids")
            }
        };
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index.insert_unique(hasher.hash_one(name), id, |&x| {
            hasher.hash_one(&*entry(entries, x).name)
        });
        id
    }

    /// Counts one user fewer of `id` (nothing for 0), freeing the name at none.
    pub fn release(&mut self, id: NameId) {
        if id == 0 {
            return;
        }
        let e = self.entries[id as usize - 1].as_mut().expect("a used name id");
        e.users -= 1;
        if e.users > 0 {
            return;
        }
        let hash = self.hasher.hash_one(&*e.name);
        if let Ok(found) = self.index.find_entry(hash, |&x| x == id) {
            found.remove();
        }
        self.entries[id as usize - 1] = None;
        self.free.push(id);
    }

    /// One more than the largest id given: ids are below it.
    pub fn extent(&self) -> usize {
        self.entries.len() + 1
    }

    /// The name of a used id (`None` for 0).
    pub fn name(&self, id: NameId) -> Option<&str> {
        (id != 0).then(|| &*entry(&self.entries, id).name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_freed_when_its_last_user_releases_it() {
        let mut names = Names::default();
        let en = names.acquire("en");
        assert_eq!(names.acquire("en"), en);
        names.release(en);
        assert_eq!((names.find("en"), names.name(en)), (Some(en), Some("en")));
        names.release(en);
        assert_eq!(names.find("en"), None);
        let de = names.acquire("de");
        assert_eq!(de, en, "the freed id is reused");
        assert_eq!(names.name(0), None);
    }
}
