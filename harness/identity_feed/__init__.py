"""The harness as another identification domain: it builds PAM-FR identity messages and sends them over MLLP.

Scenarios about identities received from elsewhere (a hospital's patient-administration
system pushing A28/A31) need a sender the harness controls exactly, including the
faults it wants to inject. :mod:`.pam_fr` builds the messages and reads the ACK;
:mod:`.mllp` carries them and records the exchange.
"""
