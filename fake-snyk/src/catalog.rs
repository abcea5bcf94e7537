//! The seeded data the REST API serves: orgs and their deterministic, generated projects. Orgs
//! come from the config at start and may be added at run time ([`Catalog::add`]).

use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Duration as TimeDelta, OffsetDateTime};
use uuid::Uuid;

use crate::config::OrgSeed;

/// Every seeded org belongs to this one group.
const GROUP_NAMESPACE: Uuid = Uuid::from_u128(0x0b6d_7f1e_2c4a_4e59_8d33_51a0_9c7e_6b02);

/// Package managers with the manifest file each scans, cycled through by project index.
const KINDS: &[(&str, &str)] = &[
    ("npm", "package.json"),
    ("maven", "pom.xml"),
    ("pip", "requirements.txt"),
    ("gomodules", "go.mod"),
    ("yarn", "yarn.lock"),
    ("gradle", "build.gradle"),
    ("nuget", "packages.config"),
];

/// Where projects were imported from, cycled at a different period than `KINDS` so that every
/// pairing occurs.
const ORIGINS: &[&str] = &["github", "cli", "gitlab", "bitbucket-cloud", "azure-repos"];

const BRANCHES: &[&str] = &["main", "develop", "release"];

/// The most orgs one fake serves. Each org's `created_at` lies 30 days before the previous
/// one's, so this keeps every date within the years RFC 3339 can write.
pub const MAX_ORGS: usize = 10_000;

/// Why orgs cannot be added ([`crate::FakeSnyk::add_orgs`], `POST /_fake/orgs`); nothing is
/// added then.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddOrgsError {
    /// An org with the same id (the same name, for [`OrgSeed::new`]) is served already, or is
    /// listed twice.
    #[error("org {name:?} ({id}) is seeded already")]
    Duplicate {
        /// The name of the org added again.
        name: String,
        /// Its id.
        id: Uuid,
    },
    /// More than [`MAX_ORGS`] in all.
    #[error("the fake serves at most {MAX_ORGS} orgs; {served} are seeded, {adding} more asked")]
    TooMany {
        /// Orgs served now.
        served: usize,
        /// Orgs asked for.
        adding: usize,
    },
}

/// An org as served.
#[derive(Debug, Clone)]
pub(crate) struct Org {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) slug: String,
    pub(crate) projects: usize,
    pub(crate) group_id: Uuid,
    created_at: OffsetDateTime,
}

/// The orgs; projects are generated on demand from the org and an index.
#[derive(Debug, Clone)]
pub(crate) struct Catalog {
    orgs: Vec<Org>,
}

/// The attributes that filters look at, without building the JSON.
#[derive(Debug)]
pub(crate) struct ProjectSummary {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    pub(crate) origin: &'static str,
    pub(crate) target_file: &'static str,
    pub(crate) target_reference: &'static str,
}

fn epoch() -> OffsetDateTime {
    // 2023-01-02T03:04:05Z: an arbitrary fixed instant so that every run serves the same data.
    OffsetDateTime::from_unix_timestamp(1_672_628_645).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn rfc3339(at: OffsetDateTime) -> String {
    // Formatting a UTC OffsetDateTime with a four-digit year cannot fail.
    at.format(&Rfc3339).unwrap_or_default()
}

impl Catalog {
    /// The orgs of `seeds`, whose ids the config checked to be distinct.
    pub(crate) fn new(seeds: &[OrgSeed]) -> Self {
        let mut catalog = Self { orgs: Vec::new() };
        catalog.push(seeds);
        catalog
    }

    /// Adds the orgs of `seeds` after those served, all or none: each must be new, and the
    /// catalog must stay within [`MAX_ORGS`].
    pub(crate) fn add(&mut self, seeds: &[OrgSeed]) -> Result<(), AddOrgsError> {
        if self.orgs.len().saturating_add(seeds.len()) > MAX_ORGS {
            return Err(AddOrgsError::TooMany {
                served: self.orgs.len(),
                adding: seeds.len(),
            });
        }
        for (i, seed) in seeds.iter().enumerate() {
            if self.org(seed.id).is_some() || seeds[..i].iter().any(|s| s.id == seed.id) {
                return Err(AddOrgsError::Duplicate {
                    name: seed.name.clone(),
                    id: seed.id,
                });
            }
        }
        self.push(seeds);
        Ok(())
    }

    fn push(&mut self, seeds: &[OrgSeed]) {
        let group_id = Uuid::new_v5(&GROUP_NAMESPACE, b"fake-snyk-group");
        let first = self.orgs.len();
        self.orgs
            .extend(seeds.iter().enumerate().map(|(i, seed)| Org {
                id: seed.id,
                name: seed.name.clone(),
                slug: seed.slug.clone(),
                projects: seed.projects,
                group_id,
                created_at: epoch() - TimeDelta::days(30 * ((first + i) as i64 + 1)),
            }));
    }

    pub(crate) fn orgs(&self) -> &[Org] {
        &self.orgs
    }

    pub(crate) fn org(&self, id: Uuid) -> Option<&Org> {
        self.orgs.iter().find(|o| o.id == id)
    }
}

impl Org {
    /// The JSON:API resource (rest.json `OrgWithRelationships`).
    pub(crate) fn resource(&self) -> Value {
        json!({
            "type": "org",
            "id": self.id,
            "attributes": {
                "name": self.name,
                "slug": self.slug,
                "is_personal": false,
                "group_id": self.group_id,
                "access_requests_enabled": false,
                "created_at": rfc3339(self.created_at),
                "updated_at": rfc3339(self.created_at + TimeDelta::days(1)),
            },
        })
    }

    /// The filterable facts of project `index` (0-based), cheap enough to compute per request.
    pub(crate) fn project_summary(&self, index: usize) -> ProjectSummary {
        let (kind, target_file) = KINDS[index % KINDS.len()];
        let origin = ORIGINS[index % ORIGINS.len()];
        let target_reference = BRANCHES[(index / KINDS.len()) % BRANCHES.len()];
        ProjectSummary {
            id: Uuid::new_v5(&self.id, format!("project-{index}").as_bytes()),
            name: format!("{}/service-{:04}:{target_file}", self.slug, index + 1),
            kind,
            origin,
            target_file,
            target_reference,
        }
    }

    /// The JSON:API resource for project `index` (rest.json's `listOrgProjects` item).
    pub(crate) fn project(&self, index: usize) -> Value {
        let summary = self.project_summary(index);
        // Every three projects share a target (a repository with several manifests).
        let target_id = Uuid::new_v5(&self.id, format!("target-{}", index / 3).as_bytes());
        let created = self.created_at + TimeDelta::hours(index as i64 + 1);
        json!({
            "type": "project",
            "id": summary.id,
            "attributes": {
                "name": summary.name,
                "type": summary.kind,
                "target_file": summary.target_file,
                "target_reference": summary.target_reference,
                "origin": summary.origin,
                "created": rfc3339(created),
                "status": "active",
                "read_only": false,
                "settings": {
                    "recurring_tests": {"frequency": if index % 4 == 3 { "weekly" } else { "daily" }},
                    "pull_requests": {"fail_only_for_issues_with_fix": false},
                },
                "business_criticality": [],
                "environment": [],
                "lifecycle": [],
                "tags": [],
            },
            "relationships": {
                "organization": {
                    "data": {"type": "org", "id": self.id},
                    "links": {"related": format!("/orgs/{}", self.id)},
                },
                "target": {
                    "data": {"type": "target", "id": target_id},
                    "links": {"related": format!("/orgs/{}/targets/{target_id}", self.id)},
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn projects_are_deterministic_and_distinct() {
        let catalog = Catalog::new(&[OrgSeed::new("Acme", 50)]);
        let org = &catalog.orgs()[0];
        assert_eq!(org.project(7), org.project(7));
        let ids: std::collections::HashSet<Uuid> =
            (0..50).map(|i| org.project_summary(i).id).collect();
        assert_eq!(ids.len(), 50);
        assert_eq!(
            org.project(0)["attributes"]["name"],
            "acme/service-0001:package.json"
        );
        assert_eq!(
            org.project(0)["attributes"]["created"],
            "2022-12-03T04:04:05Z"
        );
    }

    #[test]
    fn added_orgs_follow_the_seeded_ones_all_or_none() {
        let mut catalog = Catalog::new(&[OrgSeed::new("Acme", 5)]);
        catalog
            .add(&[OrgSeed::new("Beta", 500), OrgSeed::new("Gamma", 0)])
            .unwrap();
        let names: Vec<&str> = catalog.orgs().iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["Acme", "Beta", "Gamma"]);
        // Dated as if seeded at start, 30 days apart.
        assert_eq!(
            catalog.orgs()[1].resource()["attributes"]["created_at"],
            Catalog::new(&[OrgSeed::new("Acme", 5), OrgSeed::new("Beta", 500)]).orgs()[1]
                .resource()["attributes"]["created_at"]
        );

        let again = OrgSeed::new("Beta", 1);
        assert_eq!(
            catalog.add(&[OrgSeed::new("Delta", 1), again.clone()]),
            Err(AddOrgsError::Duplicate {
                name: "Beta".into(),
                id: again.id
            })
        );
        let twice = OrgSeed::new("Epsilon", 1);
        assert!(matches!(
            catalog.add(&[twice.clone(), twice]),
            Err(AddOrgsError::Duplicate { .. })
        ));
        assert_eq!(catalog.orgs().len(), 3, "nothing added on an error");

        let many: Vec<OrgSeed> = (0..MAX_ORGS - 2)
            .map(|i| OrgSeed::new(&format!("Org {i}"), 1))
            .collect();
        assert_eq!(
            catalog.add(&many),
            Err(AddOrgsError::TooMany {
                served: 3,
                adding: MAX_ORGS - 2
            })
        );
        catalog.add(&many[1..]).unwrap();
        assert_eq!(catalog.orgs().len(), MAX_ORGS);
        // The oldest org's date still has four digits.
        let last = &catalog.orgs()[MAX_ORGS - 1];
        assert!(
            last.resource()["attributes"]["created_at"]
                .as_str()
                .unwrap()
                .starts_with('1'),
            "{}",
            last.resource()
        );
    }
}
