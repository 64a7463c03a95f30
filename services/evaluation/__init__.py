"""Evaluation (验单 / 评单 / 四榜): verification of done work, residents' ratings, the measures of everyone
who answers the whistle, and the quarterly boards.

One service (`python -m services.evaluation`, databases hl_evaluation_<tenant>), in areas that share its
process, its outbox relay, its durable timers and its state topic but nothing else
(services/evaluation/areas.py):

- `verification/`: VerificationService (protos/hongling/evaluation/v1/verification.proto)
- `ratings/`: RatingService (ratings.proto)
- `measures/`: EvaluationService (evaluation.proto): measures, boards, weights, rebuild

Each area has the shape of a service (domain.py, documents.py, handlers.py, servicer.py, readmodel.py).
Events: protos/hongling/events/v1/evaluation_events.proto on hongling.evaluation.v1.
"""
