"""Service (after-sales and contact centre) vocabulary."""

#: Channels a case arrives on (DOMAIN.md: one consistent answer whatever the channel).
CASE_CHANNELS = ("email", "web", "phone", "chat")
#: First-level routing of the email handling rules (DOMAIN.md, seeds 000 section 10.2.2).
DEPARTMENTS = ("sales", "customer_service", "public_relations", "human_resources", "finance")
#: Second-level priority classes, least to most urgent (DOMAIN.md).
PRIORITIES = ("valuable_suggestion", "ordinary", "special", "important", "emergency")
CASE_STATUSES = ("open", "resolved", "closed")
#: The two promised deadlines of a case (DOMAIN.md: "a promised deadline is kept").
SLA_TARGETS = ("first_response", "resolution")
#: Who an escalation goes to, by escalation level 1, 2, 3 (higher levels stay at the last tier).
ESCALATION_TIERS = ("team_lead", "department_head", "senior_management")
#: Complaint handling stages (DOMAIN.md: receive -> classify and assess -> resolve -> summarise).
COMPLAINT_STAGES = ("received", "assessed", "resolved", "summarised")
COMPLAINT_CATEGORIES = ("product_quality", "service", "delivery", "billing", "staff", "other")
COMPLAINT_SEVERITIES = ("low", "medium", "high", "critical")
FAQ_STATUSES = ("draft", "published", "retired")
#: Satisfaction survey scores: 1 (very dissatisfied) to 5 (very satisfied).
SURVEY_MIN_SCORE = 1
SURVEY_MAX_SCORE = 5
#: Who classified a case when no agent did.
RULES_CLASSIFIER = "rules"
