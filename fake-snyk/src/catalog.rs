//! The seeded data the REST API serves: orgs and their deterministic, generated projects.

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
    pub(crate) fn new(seeds: &[OrgSeed]) -> Self {
        let group_id = Uuid::new_v5(&GROUP_NAMESPACE, b"fake-snyk-group");
        let orgs = seeds
            .iter()
            .enumerate()
            .map(|(i, seed)| Org {
                id: seed.id,
                name: seed.name.clone(),
                slug: seed.slug.clone(),
                projects: seed.projects,
                group_id,
                created_at: epoch() - TimeDelta::days(30 * (i as i64 + 1)),
            })
            .collect();
        Self { orgs }
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
}
