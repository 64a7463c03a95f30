"""Alliance life (联盟共建): the alliance's common life beside the whistle — joint meetings that decide
(共商共议共决), standing posts (认领岗位), pledged resources (提供资源), co-building activities (参与共建),
the volunteer time bank and the community funds ledger.

One service (`python -m services.alliance`, databases hl_alliance_<tenant>), in areas that share its
process, its outbox relay, its durable timers and its state topic but nothing else:

- `meetings/`: MeetingService (protos/hongling/alliance/v1/meetings.proto)
- `posts/`: PostService and ActivityService (posts.proto, activities.proto)
- `ledger/`: ResourceService, TimeBankService and FundService (ledger.proto)

Each area has the shape of a service (domain.py, documents.py, handlers.py, servicer.py, readmodel.py) and
adds itself to AREAS below. Events: protos/hongling/events/v1/alliance_events.proto on hongling.alliance.v1.
"""
