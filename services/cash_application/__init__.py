"""Cash application: payments, remittances, applications to open items, short pays and
unapplied cash. (Bank statements and auto-matching come later; they add new ways to propose an
application, the Payment aggregate and the open-items model stay the ones here.)"""
