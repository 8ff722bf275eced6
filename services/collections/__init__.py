"""Collections: promises to pay and the rule that decides whether they were kept or broken."""
