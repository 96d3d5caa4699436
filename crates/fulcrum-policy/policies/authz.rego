# Role and attribute rules for every API action (SPEC §6). Tenants never see each other's
# models; a principal bound to a domain sees only that domain; only key-admins touch keys.
# input: {"principal": {"subject", "role", "tenant", "domain", "env"}, "action": "promote",
#         "resource": {"tenant", "domain"}}
package fulcrum.authz

default allow := false

role_allows if input.action in data.fulcrum.roles[input.principal.role]

same_tenant if not input.resource.tenant

same_tenant if input.resource.tenant == input.principal.tenant

domain_ok if input.principal.domain == "*"

domain_ok if not input.resource.domain

domain_ok if input.resource.domain == input.principal.domain

allow if {
	role_allows
	same_tenant
	domain_ok
}

deny contains sprintf("role_forbids:%s", [input.action]) if not role_allows

# Reported as "not found" by the API: other tenants' resources are invisible.
deny contains "other_tenant" if not same_tenant

deny contains "other_domain" if not domain_ok

decision := {"allow": allow, "deny": deny}

test_key_admin_only_keys if {
	allow with input as {"principal": {"role": "key-admin", "tenant": "t", "domain": "*"}, "action": "administer_keys", "resource": {}}
	not allow with input as {"principal": {"role": "admin", "tenant": "t", "domain": "*"}, "action": "administer_keys", "resource": {}}
	not allow with input as {"principal": {"role": "key-admin", "tenant": "t", "domain": "*"}, "action": "promote", "resource": {"tenant": "t"}}
}

test_other_tenant_denied if {
	"other_tenant" in deny with input as {"principal": {"role": "admin", "tenant": "a", "domain": "*"}, "action": "read", "resource": {"tenant": "b", "domain": "x"}}
}
