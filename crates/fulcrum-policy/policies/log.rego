# Decision-log masking (OPA's system.log.mask convention): JSON pointers into {"input": …} to
# erase before a decision is stored. Personal data in model cards (contacts, authors) never
# reaches the decision log.
package fulcrum.system.log

mask contains "/input/version/model_card/contact" if input.input.version.model_card.contact

mask contains "/input/version/model_card/authors" if input.input.version.model_card.authors

mask contains "/input/principal/purpose" if input.input.principal.purpose

test_card_contacts_are_masked if {
	"/input/version/model_card/contact" in mask with input as {"input": {"version": {"model_card": {"contact": "jane@bank.example"}}}}
	count(mask) == 0 with input as {"input": {"version": {"model_card": {"owner": "risk"}}}}
}
