# Role and attribute rules for every API action (SPEC §6). Tenants never see each other's
# models; a principal bound to a domain sees only that domain; only key-admins touch keys.
# DLP: a model or version carrying a sensitive label (data.fulcrum.dlp.sensitive_labels) is
# resolved and downloaded only for a purpose its model card allows.
# input: {"principal": {"subject", "role", "tenant", "domain", "env", "purpose"}, "action": "promote",
#         "resource": {"tenant", "domain", "model", "labels", "allowed_purposes", "stage", "env"}}
package fulcrum.authz

default allow := false

role_allows if input.action in data.fulcrum.roles[input.principal.role]

same_tenant if not input.resource.tenant

same_tenant if input.resource.tenant == input.principal.tenant

domain_ok if input.principal.domain == "*"

domain_ok if not input.resource.domain

domain_ok if input.resource.domain == input.principal.domain

sensitive if {
	some label in input.resource.labels
	label in data.fulcrum.dlp.sensitive_labels
}

purpose_checked if {
	sensitive
	input.action in data.fulcrum.dlp.purpose_checked_actions
}

purpose_ok if not purpose_checked

purpose_ok if input.principal.purpose in input.resource.allowed_purposes

allow if {
	role_allows
	same_tenant
	domain_ok
	purpose_ok
}

deny contains sprintf("role_forbids:%s", [input.action]) if not role_allows

# Reported as "not found" by the API: other tenants' resources are invisible.
deny contains "other_tenant" if not same_tenant

deny contains "other_domain" if not domain_ok

deny contains "purpose_required" if {
	purpose_checked
	not input.principal.purpose
}

deny contains "purpose_not_allowed" if {
	purpose_checked
	input.principal.purpose
	not input.principal.purpose in input.resource.allowed_purposes
}

decision := {"allow": allow, "deny": deny}

test_key_admin_only_keys if {
	allow with input as {"principal": {"role": "key-admin", "tenant": "t", "domain": "*"}, "action": "administer_keys", "resource": {}}
	not allow with input as {"principal": {"role": "admin", "tenant": "t", "domain": "*"}, "action": "administer_keys", "resource": {}}
	not allow with input as {"principal": {"role": "key-admin", "tenant": "t", "domain": "*"}, "action": "promote", "resource": {"tenant": "t"}}
}

test_other_tenant_denied if {
	"other_tenant" in deny with input as {"principal": {"role": "admin", "tenant": "a", "domain": "*"}, "action": "read", "resource": {"tenant": "b", "domain": "x"}}
}

test_sensitive_download_needs_an_allowed_purpose if {
	res := {"tenant": "t", "domain": "d", "model": "m", "labels": ["pii:restricted"], "allowed_purposes": ["fraud-detection"]}
	allow with input as {"principal": {"role": "serving", "tenant": "t", "domain": "*", "purpose": "fraud-detection"}, "action": "download_blob", "resource": res}
	"purpose_not_allowed" in deny with input as {"principal": {"role": "serving", "tenant": "t", "domain": "*", "purpose": "marketing"}, "action": "download_blob", "resource": res}
	"purpose_required" in deny with input as {"principal": {"role": "serving", "tenant": "t", "domain": "*"}, "action": "resolve", "resource": res}
	allow with input as {"principal": {"role": "viewer", "tenant": "t", "domain": "*"}, "action": "read", "resource": res}
}
